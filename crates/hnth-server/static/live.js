// The live part shared by the site app and the console: the signaling WebSocket, the one
// RTCPeerConnection of this page, and the video tiles. Protocol: docs/SIGNALING.md.

const T = window.HNTH_I18N || {};

export function t(key, vars = {}) {
  let s = T[key] || key;
  for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}

/** The Vietnamese (or English) text for an error message from the server. */
export function errorText(msg) {
  return T[`err_${msg.code}_${msg.article}`] || T[`err_${msg.code}`] || msg.message;
}

// Simulcast layers sent by every participant; the server picks one per receiver.
const ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];

export class Live {
  constructor({ grid, onMessage, onError, onConnection }) {
    this.grid = grid;
    this.onMessage = onMessage;
    this.onError = onError || (() => {});
    this.onConnection = onConnection || (() => {});
    this.queue = Promise.resolve();
    this.local = null;
    this.names = new Map();
    this.retry = 500;
    // The view last told to the server (see sendView).
    this.viewSent = '';
    this.viewTimer = null;
    this.resizer = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.scheduleView()) : null;
    document.addEventListener('visibilitychange', () => this.scheduleView());
    // What tests and operators can inspect from the browser console.
    this.hnth = window.hnth = {
      ws: null, pc: null, streams: new Map(), participants: [], state: 'idle', errors: [],
      meeting: null, view: [], send: (m) => this.send(m),
    };
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${proto}://${location.host}/ws`);
    this.hnth.ws = ws;
    ws.onopen = () => { this.retry = 500; this.onConnection(true); };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      // One message at a time: an offer must wait until the previous answer is applied.
      this.queue = this.queue.then(() => this.handle(msg)).catch((err) => console.error(err));
    };
    ws.onclose = () => {
      this.onConnection(false);
      this.stopMedia();
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    };
  }

  send(msg) {
    if (this.hnth.ws && this.hnth.ws.readyState === WebSocket.OPEN) this.hnth.ws.send(JSON.stringify(msg));
  }

  async handle(msg) {
    const pc = this.hnth.pc;
    switch (msg.type) {
      case 'answer':
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
    let local;
    try {
      local = await this.localStream();
    } catch (err) {
      this.onError({ code: 'camera', message: t('camera_error', { error: err.message }) });
      return;
    }
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
    this.tile('self', local, true);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.send({ type: 'offer', meeting: meeting.id, sdp: offer.sdp });
  }

  stopMedia() {
    this.viewSent = ''; // a new connection starts with no view on the server
    if (this.hnth.pc) this.hnth.pc.close();
    this.hnth.pc = null;
    this.hnth.streams.clear();
    this.hnth.meeting = null;
    if (this.grid) this.grid.replaceChildren();
  }

  /** One tile per remote participant still in the meeting, labelled with the site's name. */
  syncTiles() {
    if (!this.grid) return;
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
