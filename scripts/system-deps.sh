#!/usr/bin/env bash
# Installs the Debian packages the tests need (real media, Mosquitto, openssl for the throwaway CA of the MQTT TLS
# tests, a GStreamer RTSP server, Chromium, and cmake + a C++ compiler to build llama-cpp-python, the real model server
# of tests/remote) when they are missing. As root it runs apt-get; otherwise it names what to install and fails.
set -euo pipefail
PKGS=(opencv-doc mosquitto openssl ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-tools chromium cmake g++)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages for the tests: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
