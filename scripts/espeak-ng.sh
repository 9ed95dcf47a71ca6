#!/usr/bin/env bash
# Prints a command that runs espeak-ng, the speech synthesizer the speech
# recognition tests speak their sentences with. The system's when it has
# one; otherwise Debian's packages, downloaded (no root: `apt-get download`)
# and unpacked once under the cache. Run again, it answers at once.
#
#   "$(scripts/espeak-ng.sh)" -v en-us -w out.wav "Hello there."
#
# With --env it prints instead what the server needs to phonemize with
# that library (text to speech): `GREENTHREAD_ESPEAK_NG=... LD_LIBRARY_PATH=...`,
# nothing where the system has espeak-ng's library.
#
#   env $(scripts/espeak-ng.sh --env) greenthread serve ...
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ "${1:-}" == "--env" ]]; then
  if [[ -e /usr/lib/x86_64-linux-gnu/libespeak-ng.so.1 || -e /usr/lib/libespeak-ng.so.1 ]]; then
    exit 0
  fi
elif command -v espeak-ng >/dev/null 2>&1; then
  command -v espeak-ng
  exit 0
fi

dir="$GT_CACHE/espeak-ng"
wrapper="$dir/espeak-ng"
# espeak-ng with its library and the libraries Debian links it against
# (audio output through PulseAudio, which writing a WAV file never uses).
packages=(espeak-ng libespeak-ng1 espeak-ng-data libpcaudio0 libsonic0 libpulse0 libasound2 libasyncns0
  libsndfile1 libflac12 libvorbis0a libvorbisenc2 libopus0 libogg0 libmpg123-0 libmp3lame0)
stamp="$(printf '%s\n' "${packages[@]}" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$wrapper" || "$(cat "$dir/.packages" 2>/dev/null)" != "$stamp" ]]; then
  need apt-get "espeak-ng comes from Debian's packages"
  log "Fetching espeak-ng from Debian"
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
  (cd "$dir/debs" && apt-get download "${packages[@]}" >/dev/null 2>&1) || die "apt-get download failed: is Debian's archive reachable?"
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  lib="$dir/root/usr/lib/x86_64-linux-gnu"
  cat >"$wrapper" <<WRAPPER
#!/bin/sh
LD_LIBRARY_PATH="$lib:$lib/pulseaudio\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dir/root/usr/bin/espeak-ng" --path="$lib" "\$@"
WRAPPER
  chmod +x "$wrapper"
  rm -rf "$dir/debs"
  echo "$stamp" >"$dir/.packages"
fi
if [[ "${1:-}" == "--env" ]]; then
  lib="$dir/root/usr/lib/x86_64-linux-gnu"
  echo "GREENTHREAD_ESPEAK_NG=$lib/libespeak-ng.so.1 LD_LIBRARY_PATH=$lib:$lib/pulseaudio${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  echo "$wrapper"
fi
