#!/usr/bin/env bash
# macOS only (not run here): sign, notarize and wrap "dist/Checkpoint Studio.app" in a .dmg.
# Run after `python packaging/build.py` on a Mac (arm64: torch has no x86_64 macOS wheels now).
#   CKPT_STUDIO_CODESIGN_IDENTITY  "Developer ID Application: <Name> (<TEAMID>)"  (placeholder)
#   CKPT_STUDIO_NOTARY_PROFILE     a `xcrun notarytool store-credentials` profile  (placeholder)
# Without them it makes an unsigned .dmg (Gatekeeper will refuse it on other Macs).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(python -c "import core; print(core.__version__)")
app="dist/Checkpoint Studio.app"
dmg="dist/checkpoint-studio-${version}-macos-arm64.dmg"
"$app/Contents/MacOS/ckpt-studio" --self-test
if [[ -n "${CKPT_STUDIO_CODESIGN_IDENTITY:-}" ]]; then
  codesign --force --deep --options runtime --timestamp \
    --entitlements packaging/macos/entitlements.plist \
    --sign "$CKPT_STUDIO_CODESIGN_IDENTITY" "$app"
  codesign --verify --strict --verbose=2 "$app"
fi
rm -f "$dmg"
staging=$(mktemp -d)
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
hdiutil create -volname "Checkpoint Studio" -srcfolder "$staging" -format UDZO -ov "$dmg"
rm -rf "$staging"
if [[ -n "${CKPT_STUDIO_CODESIGN_IDENTITY:-}" && -n "${CKPT_STUDIO_NOTARY_PROFILE:-}" ]]; then
  codesign --sign "$CKPT_STUDIO_CODESIGN_IDENTITY" --timestamp "$dmg"
  xcrun notarytool submit "$dmg" --keychain-profile "$CKPT_STUDIO_NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "$dmg"
