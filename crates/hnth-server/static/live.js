// The live part shared by the site app and the console: the signaling WebSocket, the one
// RTCPeerConnection of this page, and the video tiles. Protocol: docs/SIGNALING.md.

// The page's translations, a JSON block of the page (no inline script: docs/security.md).
const T = JSON.parse(document.getElementById('i18n')?.textContent || '{}');

export function t(key, vars = {}) {
  let s = T[key] || key;
  for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}

// Numbers the page's language's way: 1.234,5 in Vietnamese, 1,234.5 in English (the server's
// `num` filter does the same in the templates).
const LOCALE = document.documentElement.lang === 'en' ? 'en-US' : 'vi-VN';
const NUMBER_FORMATS = new Map();

export function formatNumber(value, digits = 0) {
  let f = NUMBER_FORMATS.get(digits);
  if (!f) {
    f = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    NUMBER_FORMATS.set(digits, f);
  }
  return f.format(value);
}

// Times of day as the province reads them: 24-hour, Asia/Ho_Chi_Minh, whatever the browser's zone.
const TIME = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Ho_Chi_Minh', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

/** "09:05" for an RFC 3339 instant. */
export function formatTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : TIME.format(d);
}

/** A waiting time: "0:42", "12:05", "1:02:10". */
export function formatWait(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${Math.floor(s / 60)}:${ss}`;
}

/** The Vietnamese (or English) text for an error message from the server. A refusal of the
 * regulation carries its own Vietnamese reason with the article (`message_vi`): a Vietnamese
 * page shows that rather than a generic line. */
export function errorText(msg) {
  if (LOCALE === 'vi-VN' && msg.message_vi) return msg.message_vi;
  return T[`err_${msg.code}_${msg.article}`] || T[`err_${msg.code}`] || msg.message;
}

// Simulcast layers sent by every participant; the server picks one per receiver.
const ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];

// Where each cell of a named layout sits on the screen: [column, row, width, height] on a grid
// of `cols` × `rows` equal tracks, largest cell first (the order of a `frame`'s cells). The
// whole frame is 16:9 (or `aspect`), so that every cell is 16:9 and no picture is letterboxed.
const equal = (n) => ({
  cols: n,
  rows: n,
  cells: Array.from({ length: n * n }, (_, i) => [(i % n) + 1, Math.floor(i / n) + 1, 1, 1]),
});
const ring = (cols, row, from = 1) => Array.from({ length: cols }, (_, i) => [from + i, row, 1, 1]);
export const LAYOUTS = {
  '1x1': equal(1),
  '2x2': equal(2),
  '3x3': equal(3),
  '4x4': equal(4),
  '1+5': { cols: 3, rows: 3, cells: [[1, 1, 2, 2], [3, 1, 1, 1], [3, 2, 1, 1], ...ring(3, 3)] },
  '1+7': { cols: 4, rows: 4, cells: [[1, 1, 3, 3], [4, 1, 1, 1], [4, 2, 1, 1], [4, 3, 1, 1], ...ring(4, 4)] },
  '2+8': { cols: 4, rows: 4, cells: [[1, 1, 2, 2], [3, 1, 2, 2], ...ring(4, 3), ...ring(4, 4)] },
  '1+12': {
    cols: 4,
    rows: 4,
    cells: [[2, 2, 2, 2], ...ring(4, 1), [1, 2, 1, 1], [4, 2, 1, 1], [1, 3, 1, 1], [4, 3, 1, 1], ...ring(4, 4)],
  },
  // The floor holder over a strip of the others: a little taller than 16:9.
  speaker: { cols: 7, rows: 8, aspect: (16 / 9) * (7 / 8), cells: [[1, 1, 7, 7], ...ring(7, 8)] },
  lecture: equal(1),
};

function shapeOf(layout, count) {
  const known = LAYOUTS[layout];
  if (known && known.cells.length >= count) return known;
  return equal(Math.max(1, Math.ceil(Math.sqrt(count))));
}

/**
 * Lays out a `frame` (`{layout, cells: [{site, name, stream, size}]}`, docs/SIGNALING.md) in
 * `container`, a CSS grid: one `figure` per cell, in its place of the layout, with the site's
 * name on it. A cell whose site has a picture shows it (`streamOf(cell)`: a MediaStream or
 * null); a site without one, or not connected, shows a calm placeholder with its name; an empty
 * cell shows nothing. Videos are muted: the page plays each site's sound apart, so that a site
 * is heard whether or not it is on the screen. Figures are kept per site from one frame to the
 * next, so a site that moves to another cell keeps playing.
 *
 * `selfSite`: this screen's own site (its cell is marked); `floor`: the sites holding the
 * floor (their cells are marked); `onVideo(video)`: called once for each new video element.
 */
export function renderFrame(container, frame, { streamOf = () => null, selfSite = null, floor = [], onVideo = null } = {}) {
  const cells = (frame && frame.cells) || [];
  const shape = shapeOf(frame && frame.layout, cells.length);
  container.classList.add('frame');
  container.dataset.layout = (frame && frame.layout) || '';
  container.style.setProperty('--frame-cols', shape.cols);
  container.style.setProperty('--frame-rows', shape.rows);
  container.style.setProperty('--frame-aspect', shape.aspect || 16 / 9);
  const keep = new Set();
  cells.forEach((cell, i) => {
    const key = cell.site === null || cell.site === undefined ? `empty-${i}` : `site-${cell.site}`;
    keep.add(key);
    let fig = container.querySelector(`:scope > figure[data-key="${key}"]`);
    if (!fig) {
      fig = frameCell(key, cell, onVideo);
      container.append(fig);
    }
    const [col, row, w, h] = shape.cells[i];
    fig.style.gridArea = `${row} / ${col} / span ${h} / span ${w}`;
    fig.dataset.cell = i;
    fig.dataset.size = cell.size;
    if (cell.site === null || cell.site === undefined) return;
    const self = cell.site === selfSite;
    const stream = streamOf(cell);
    fig.classList.toggle('self', self);
    fig.classList.toggle('floor', floor.includes(cell.site));
    fig.classList.toggle('offline', !cell.stream && !self);
    fig.classList.toggle('no-video', !stream);
    // What `view` reports: the height of every remote picture on the screen.
    if (cell.stream && !self) fig.dataset.stream = cell.stream;
    else delete fig.dataset.stream;
    const name = cell.name || `#${cell.site}`;
    fig.querySelector('figcaption .name').textContent = self ? `${name} (${t('site_cell_self')})` : name;
    fig.querySelector('.placeholder .name').textContent = name;
    fig.querySelector('.placeholder .why').textContent = cell.stream || self ? '' : t('site_cell_offline');
    const video = fig.querySelector('video');
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      if (stream) video.play().catch(() => {});
    }
  });
  for (const fig of [...container.querySelectorAll(':scope > figure')]) {
    if (!keep.has(fig.dataset.key)) fig.remove();
  }
}

function frameCell(key, cell, onVideo) {
  const fig = document.createElement('figure');
  fig.className = 'cell';
  fig.dataset.key = key;
  if (cell.site === null || cell.site === undefined) {
    fig.classList.add('empty');
    return fig;
  }
  fig.dataset.site = cell.site;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const placeholder = document.createElement('div');
  placeholder.className = 'placeholder';
  placeholder.innerHTML = '<span class="name"></span><span class="why"></span>';
  const caption = document.createElement('figcaption');
  caption.innerHTML = `<span class="mic" aria-hidden="true">${MIC_SVG}</span><span class="name"></span>`
    + `<span class="floor-badge">${escapeHtml(t('site_cell_floor'))}</span>`;
  fig.append(video, placeholder, caption);
  if (onVideo) onVideo(video);
  return fig;
}

const MIC_SVG = '<svg viewBox="0 0 24 24" width="1em" height="1em"><path fill="currentColor" d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.92V21h2v-3.08A7 7 0 0 0 19 11z"/></svg>';

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

export class Live {
  /**
   * `grid`: where the pictures go. By default a tile per participant (the console); with
   * `frame: true`, the frame the control center sets for this screen (C1, the site app), with
   * each site's sound played apart from the pictures.
   */
  constructor({ grid, frame = false, onMessage, onError, onConnection }) {
    this.grid = grid;
    this.frameMode = frame;
    this.onMessage = onMessage || (() => {});
    this.onError = onError || (() => {});
    this.onConnection = onConnection || (() => {});
    this.queue = Promise.resolve();
    this.local = null;
    this.names = new Map();
    this.retry = 500;
    // The view last told to the server (see sendView).
    this.viewSent = '';
    this.viewTimer = null;
    this.audio = null;
    this.resizer = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.scheduleView()) : null;
    document.addEventListener('visibilitychange', () => this.scheduleView());
    // What tests and operators can inspect from the browser console: `last` holds the last
    // message of each type; `states` each followed meeting's `meeting_state`.
    this.hnth = window.hnth = {
      ws: null, pc: null, streams: new Map(), participants: [], state: 'idle', errors: [],
      meeting: null, view: [], send: (m) => this.send(m),
      site: null, frame: null, states: {}, last: {},
    };
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${proto}://${location.host}/ws`);
    this.hnth.ws = ws;
    ws.onopen = () => { this.retry = 500; this.hnth.stopping = false; this.onConnection(true); };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      // One message at a time: an offer must wait until the previous answer is applied.
      this.queue = this.queue.then(() => this.handle(msg)).catch((err) => console.error(err));
    };
    ws.onclose = () => {
      this.onConnection(false);
      this.stopMedia();
      // Backoff with jitter: after a restart every site of the province reconnects, spread
      // over the interval rather than all at the same instant.
      setTimeout(() => this.connect(), this.retry / 2 + Math.random() * (this.retry / 2));
      this.retry = Math.min(this.retry * 2, 4000);
    };
  }

  send(msg) {
    if (this.hnth.ws && this.hnth.ws.readyState === WebSocket.OPEN) this.hnth.ws.send(JSON.stringify(msg));
  }

  async handle(msg) {
    const pc = this.hnth.pc;
    if (msg.type !== 'stats') this.hnth.last[msg.type] = msg;
    switch (msg.type) {
      case 'welcome':
        this.offersPending = 0; // a new connection: no answer of the old one will come
        this.hnth.site = msg.site || null;
        if (!msg.meeting) this.hnth.frame = null;
        break;
      case 'frame':
        this.hnth.frame = msg;
        this.syncTiles();
        break;
      case 'meeting_state':
        this.hnth.states[msg.meeting] = msg;
        // The floor holders' cells are marked.
        if (this.hnth.frame && this.hnth.frame.meeting === msg.meeting) this.syncTiles();
        break;
      case 'meeting_closed':
        delete this.hnth.states[msg.meeting];
        break;
      case 'server_stopping':
        // The server stops or restarts; its meetings come back: reconnect soon, and say so.
        this.hnth.stopping = true;
        this.retry = 500;
        break;
      case 'leave':
        delete this.hnth.states[msg.meeting];
        this.hnth.frame = null;
        break;
      case 'answer':
        // Answers come in the order of our offers: one to an offer made before the newest
        // (a session already replaced) is not this connection's, and would break it.
        this.offersPending = Math.max(0, (this.offersPending || 0) - 1);
        if (this.offersPending > 0) return;
        if (pc) await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        return;
      case 'offer': {
        if (!pc) return;
        await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        this.send({ type: 'answer', sdp: answer.sdp, seq: msg.seq });
        // Applying a description turns simulcast layers back on: keep a pause in force.
        if (this.hnth.sendVideo === false) await this.applySendVideo();
        return;
      }
      case 'send_video':
        // Nobody receives our video (we are not among the meeting's speakers): pause the
        // encoder so the site's uplink carries only audio, and resume when asked.
        this.hnth.sendVideo = msg.on;
        await this.applySendVideo();
        break;
      case 'participants':
        this.hnth.participants = msg.list;
        this.names = new Map(msg.list.map((p) => [p.stream, p.name]));
        this.syncTiles();
        break;
      case 'error':
        if (msg.ref === 'offer') this.offersPending = Math.max(0, (this.offersPending || 0) - 1);
        this.hnth.errors.push(msg);
        // A `view` sent just as the media session ended is refused; nothing for the user.
        if (msg.ref !== 'view') this.onError(msg);
        break;
    }
    await this.onMessage(msg);
  }

  async applySendVideo() {
    const pc = this.hnth.pc;
    if (!pc) return;
    for (const sender of pc.getSenders()) {
      if (!sender.track || sender.track.kind !== 'video') continue;
      const params = sender.getParameters();
      if (!params.encodings) continue;
      for (const enc of params.encodings) enc.active = this.hnth.sendVideo !== false;
      await sender.setParameters(params);
    }
  }

  async localStream() {
    if (!this.local) {
      this.local = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true },
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      });
    }
    return this.local;
  }

  /** Join the meeting's media: send our camera and microphone, receive everyone else. */
  async startMedia(meeting) {
    this.stopMedia();
    this.hnth.meeting = meeting;
    // A second `join` while the first still waits for the camera (the console dialed twice)
    // makes one session, not two: only the newest call goes on past the wait. Two offers
    // would each get an answer, and the first answer, applied to the second connection,
    // would keep it from ever connecting.
    const generation = (this.mediaGeneration = (this.mediaGeneration || 0) + 1);
    let local;
    try {
      local = await this.localStream();
    } catch (err) {
      this.onError({ code: 'camera', message: t('camera_error', { error: err.message }) });
      return;
    }
    if (generation !== this.mediaGeneration) return;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: [] });
    this.hnth.pc = pc;
    this.hnth.sendVideo = true; // the server says otherwise when nobody receives us
    for (const track of local.getAudioTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [local] });
    }
    for (const track of local.getVideoTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [local], sendEncodings: ENCODINGS });
    }
    pc.ontrack = (e) => {
      const stream = e.streams[0];
      if (!stream) return;
      this.hnth.streams.set(stream.id, stream);
      stream.onremovetrack = () => {
        if (stream.getTracks().length === 0) {
          this.hnth.streams.delete(stream.id);
          this.syncTiles();
        }
      };
      this.syncTiles();
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.hnth.pc && pc.connectionState === 'failed') {
        this.stopMedia();
        this.send({ type: 'media_lost', meeting: meeting.id });
      }
    };
    // A frame shows our own camera in our own cell, if we have one.
    if (!this.frameMode) this.tile('self', local, true);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.offersPending = (this.offersPending || 0) + 1;
    this.send({ type: 'offer', meeting: meeting.id, sdp: offer.sdp });
  }

  stopMedia() {
    this.viewSent = ''; // a new connection starts with no view on the server
    if (this.hnth.pc) this.hnth.pc.close();
    this.hnth.pc = null;
    this.hnth.streams.clear();
    this.hnth.meeting = null;
    if (this.grid) this.grid.replaceChildren();
    if (this.audio) this.audio.replaceChildren();
    // The frame stays: a new media session of the same meeting (a reload, a lost link) shows
    // it as soon as the pictures are back; `leave` ends it.
  }

  /** One tile per remote participant still in the meeting, labelled with the site's name; or,
   * in frame mode, the frame's cells and every participant's sound. */
  syncTiles() {
    if (!this.grid) return;
    if (this.frameMode) {
      this.syncFrame();
      return;
    }
    const live = new Set(this.hnth.participants.map((p) => p.stream));
    for (const el of [...this.grid.querySelectorAll('figure[data-stream]')]) {
      const id = el.dataset.stream;
      if (id !== 'self' && (!this.hnth.streams.has(id) || !live.has(id))) el.remove();
    }
    for (const [id, stream] of this.hnth.streams) {
      if (live.has(id)) this.tile(id, stream, false);
    }
    // Columns so that every remote site is as large as the screen allows.
    const remote = this.grid.querySelectorAll('figure[data-stream]:not(.self)').length;
    this.grid.style.setProperty('--cols', Math.max(1, Math.ceil(Math.sqrt(remote))));
    this.grid.dataset.count = remote;
    this.scheduleView();
  }

  syncFrame() {
    const f = this.hnth.frame;
    if (!f || !this.hnth.pc) {
      this.grid.replaceChildren();
      delete this.grid.dataset.layout;
    } else {
      const me = this.hnth.site ? this.hnth.site.id : null;
      const state = this.hnth.states[f.meeting];
      renderFrame(this.grid, f, {
        streamOf: (cell) => (cell.site === me ? this.local : (cell.stream && this.hnth.streams.get(cell.stream)) || null),
        selfSite: me,
        floor: state ? state.floor : [],
        onVideo: (video) => this.resizer && this.resizer.observe(video),
      });
    }
    this.syncAudio();
    this.scheduleView();
  }

  /** Every other participant's sound, whether or not its picture is on the screen: the server
   * decides who is heard (C4). */
  syncAudio() {
    if (!this.audio) {
      this.audio = document.createElement('div');
      this.audio.className = 'audio-sink';
      this.audio.hidden = true;
      document.body.append(this.audio);
    }
    const live = new Set(this.hnth.participants.map((p) => p.stream));
    for (const el of [...this.audio.children]) {
      const id = el.dataset.stream;
      if (!live.has(id) || this.hnth.streams.get(id) !== el.srcObject) el.remove();
    }
    for (const [id, stream] of this.hnth.streams) {
      if (!live.has(id) || this.audio.querySelector(`audio[data-stream="${CSS.escape(id)}"]`)) continue;
      const el = document.createElement('audio');
      el.autoplay = true;
      el.dataset.stream = id;
      el.srcObject = stream;
      this.audio.append(el);
      el.play().catch(() => this.needsClick(el));
    }
  }

  scheduleView() {
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(() => this.sendView(), 200);
  }

  /** Tell the server how tall each remote video is shown, in device pixels, so that it
   * forwards the simulcast layer that fits the tile (a thumbnail costs the low layer only).
   * A hidden page shows nothing: every video drops to the low layer until it is back. */
  sendView() {
    const ws = this.hnth.ws;
    if (!this.grid || !this.hnth.pc || !ws || ws.readyState !== WebSocket.OPEN) return;
    const scale = window.devicePixelRatio || 1;
    const tracks = [];
    for (const fig of this.grid.querySelectorAll('figure[data-stream]:not(.self)')) {
      const video = fig.querySelector('video');
      const height = document.hidden ? 0 : Math.min(4320, Math.round(video.clientHeight * scale));
      tracks.push({ stream: fig.dataset.stream, height });
    }
    const key = JSON.stringify(tracks);
    if (tracks.length === 0 || key === this.viewSent) return;
    this.viewSent = key;
    this.hnth.view = tracks;
    this.send({ type: 'view', tracks });
  }

  tile(id, stream, self) {
    let fig = this.grid && this.grid.querySelector(`figure[data-stream="${CSS.escape(id)}"]`);
    if (!this.grid) return;
    if (!fig) {
      fig = document.createElement('figure');
      fig.className = self ? 'tile self' : 'tile';
      fig.dataset.stream = id;
      const video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      // Our own picture is silent; every other site is heard.
      video.muted = self;
      fig.append(video, document.createElement('figcaption'));
      this.grid.append(fig);
      if (!self && this.resizer) this.resizer.observe(video);
    }
    const video = fig.querySelector('video');
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      video.play().catch(() => this.needsClick(video));
    }
    fig.querySelector('figcaption').textContent = self ? t('you') : (this.names.get(id) || id);
  }

  needsClick(video) {
    // A browser that refuses sound without a gesture: the first click anywhere starts it.
    document.addEventListener('click', () => video.play().catch(() => {}), { once: true });
  }
}
