#!/bin/sh
# Makes the media of the demo's simulated sites (`hnth demo --simulated-sites`): for every site of
# the demo province, a 4 s looping VP8 clip (IVF, 640x360, 15 fps, one keyframe at the start of
# the loop, ~300 kbit/s) showing a moving test pattern with the site's name, and a 2 s Opus beep
# (Ogg, 20 ms packets) at a pitch of its own. The server embeds these files (src/sim.rs).
#
# Needs Debian's ffmpeg and fonts-dejavu-core:  apt-get install -y ffmpeg fonts-dejavu-core
# Run from anywhere:  sh crates/hnth-server/assets/sim/make.sh
set -eu
cd "$(dirname "$0")"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
FONT2=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
test -f "$FONT" || { echo "missing $FONT: apt-get install -y fonts-dejavu-core" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# code | name (as in src/demo.rs) | beep frequency in Hz
while IFS='|' read -r code name freq; do
    [ -n "$code" ] || continue
    printf '%s' "$name" > "$tmp/name.txt"
    printf '%s' "Điểm cầu mô phỏng · hnth demo" > "$tmp/sub.txt"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=640x360:rate=15:duration=4" \
        -vf "drawbox=x=0:y=ih/2-62:w=iw:h=124:color=black@0.65:t=fill,\
drawtext=fontfile=$FONT:textfile=$tmp/name.txt:fontsize=46:fontcolor=white:x=(w-text_w)/2:y=h/2-50,\
drawtext=fontfile=$FONT2:textfile=$tmp/sub.txt:fontsize=22:fontcolor=yellow:x=(w-text_w)/2:y=h/2+18" \
        -c:v libvpx -b:v 300k -maxrate 450k -bufsize 300k -g 60 -keyint_min 60 \
        -auto-alt-ref 0 -lag-in-frames 0 -deadline good -cpu-used 1 -pix_fmt yuv420p \
        -f ivf "$code.ivf"
    # A 0.3 s beep with 20 ms fades, then silence, at about -12 dBFS.
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "aevalsrc=0.25*sin(2*PI*$freq*t)*lt(t\,0.3)*min(1\,min(t\,0.3-t)*50):s=48000:d=2" \
        -ac 1 -c:a libopus -b:a 24k -frame_duration 20 -application audio \
        -f ogg "$code.opus"
    echo "$code: $(wc -c < "$code.ivf") + $(wc -c < "$code.opus") bytes"
done <<'SITES'
tinh-uy|Văn phòng Tỉnh ủy|392
tp-bac-lieu|Thành phố Bạc Liêu|440
tx-gia-rai|Thị xã Giá Rai|494
hong-dan|Huyện Hồng Dân|523
phuoc-long|Huyện Phước Long|587
vinh-loi|Huyện Vĩnh Lợi|659
hoa-binh|Huyện Hòa Bình|698
dong-hai|Huyện Đông Hải|784
SITES
