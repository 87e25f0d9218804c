// The site app: runs unattended in the meeting room. It never joins by itself; it answers the
// control center's call (C6) and shows the meeting full screen.
import { Live, t, errorText } from './live.js';

const idle = document.getElementById('idle');
const liveEl = document.getElementById('live');
const banner = document.getElementById('meeting-banner');
const status = document.getElementById('idle-status');
const errorEl = document.getElementById('site-error');

function showError(text) {
  errorEl.textContent = text;
  errorEl.hidden = !text;
}

const live = new Live({
  grid: document.getElementById('grid'),
  onError: (msg) => showError(`${t('error_prefix')}: ${errorText(msg)}`),
  onConnection: (up) => {
    if (!up) showError(t('connection_lost'));
    else showError('');
  },
  onMessage: async (msg) => {
    switch (msg.type) {
      case 'welcome':
        if (msg.site) {
          document.getElementById('site-name').textContent = msg.site.name;
          document.getElementById('room-rules').textContent = msg.site.room_rules || '';
        }
        if (!msg.meeting) setIdle();
        break;
      case 'join':
        live.hnth.state = 'in_meeting';
        idle.hidden = true;
        liveEl.hidden = false;
        banner.textContent = msg.meeting.title;
        document.getElementById('video-paused').hidden = true;
        await live.startMedia(msg.meeting);
        break;
      case 'alert': {
        const el = document.getElementById('alert-banner');
        el.textContent = `${t('alert_emergency')}: ${msg.title}`;
        el.hidden = false;
        break;
      }
      case 'send_video':
        document.getElementById('video-paused').hidden = msg.on !== false;
        break;
      case 'leave':
        live.stopMedia();
        setIdle();
        break;
    }
  },
});

function setIdle() {
  live.hnth.state = 'idle';
  idle.hidden = false;
  liveEl.hidden = true;
  status.textContent = `${t('site_idle')} ${t('site_waiting')}`;
}

// About once a second, tell the control center what this site sends (resolution, frame rate).
setInterval(async () => {
  const pc = live.hnth.pc;
  if (!pc) return;
  const stats = await pc.getStats();
  let best = null;
  let level = null;
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.frameWidth) {
      if (!best || s.frameWidth > best.frameWidth) best = s;
    }
    if (s.type === 'media-source' && s.kind === 'audio' && s.audioLevel !== undefined) level = s.audioLevel;
  });
  live.send({
    type: 'report',
    width: best ? best.frameWidth : null,
    height: best ? best.frameHeight : null,
    fps: best && best.framesPerSecond !== undefined ? best.framesPerSecond : null,
    audio_level: level,
  });
}, 1000);

// M2: the next meetings of this site, on the idle screen; refreshed every minute.
async function refreshNext() {
  try {
    const r = await fetch('/api/v1/next-meetings', { credentials: 'same-origin' });
    if (!r.ok) return;
    const { list } = await r.json();
    const box = document.getElementById('next-meetings');
    const ul = box.querySelector('ul');
    ul.replaceChildren(...list.map((m) => {
      const li = document.createElement('li');
      li.textContent = `${m.start}–${m.end} · ${m.kind}: ${m.title} (${t('bk_prep')} ${m.preparation})`;
      if (m.emergency) li.className = 'emergency';
      return li;
    }));
    box.hidden = list.length === 0;
  } catch {
    // offline: the WebSocket reconnection shows it
  }
}
refreshNext();
setInterval(refreshNext, 60_000);

live.connect();
