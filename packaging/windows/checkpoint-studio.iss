; Inno Setup 6 script: Windows installer for the PyInstaller folder dist\checkpoint-studio\.
; Not built here (needs Windows). On Windows, from the repository root:
;   python packaging\build.py
;   iscc /DAppVersion=0.1.0 packaging\windows\checkpoint-studio.iss
; -> dist\checkpoint-studio-0.1.0-windows-x64-setup.exe
; Signing: see packaging\README.md ("Signing"); the SignTool line below is the placeholder.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Checkpoint Studio"
#define GuiExe "Checkpoint Studio.exe"
#define CliExe "ckpt-studio.exe"
#define ProgId "CheckpointStudio.Checkpoint"
#define Root "..\.."

[Setup]
; AppId identifies the product for upgrades and uninstall: never change it once released.
AppId={{9A2BBBAD-2274-4EA0-BA3E-8CEDC763267A}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Checkpoint Studio developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesAssociations=yes
OutputDir={#Root}\dist
OutputBaseFilename=checkpoint-studio-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\build\icons\ckpt-studio.ico
UninstallDisplayIcon={app}\{#GuiExe}
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
; SignTool=signtool sign /fd sha256 /tr <timestamp-url> /td sha256 /n "<certificate subject>" $f
; SignedUninstaller=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "associate"; Description: "Offer Checkpoint Studio in ""Open with"" for .safetensors, .pt, .pth, .ckpt and .onnx files"; GroupDescription: "File types:"

[Files]
Source: "{#Root}\dist\checkpoint-studio\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#GuiExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#GuiExe}"; Tasks: desktopicon

[Registry]
; One ProgID, listed under each extension's OpenWithProgids: the app is offered, never forced as
; the default for a file type that another program may own.
Root: HKA; Subkey: "Software\Classes\{#ProgId}"; ValueType: string; ValueName: ""; ValueData: "Model checkpoint"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#GuiExe},0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\{#ProgId}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#GuiExe}"" ""%1"""; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.safetensors\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.pt\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.pth\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.ckpt\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.onnx\OpenWithProgids"; ValueType: string; ValueName: "{#ProgId}"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
; `ckpt-studio` from the Run dialog (Win+R); a terminal needs the full path or a PATH entry.
Root: HKA; Subkey: "Software\Microsoft\Windows\CurrentVersion\App Paths\{#CliExe}"; ValueType: string; ValueName: ""; ValueData: "{app}\{#CliExe}"; Flags: uninsdeletekey

[Run]
Filename: "{app}\{#GuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
