// The control-center console (M3): today's meetings and the emergency, the meeting this console
// follows (its sites and links, the floor, the speak requests, the frame, the roll call), and
// the control center's seat: the console that opens a meeting joins it with its camera and
// microphone; any other console watches until its operator chooses to join.
// Protocol: docs/SIGNALING.md.
import { Live, t } from './live.js';
import { $, clock, refusalText } from './console_util.js';
import { Today } from './console_today.js';
import { SitesTable } from './console_sites.js';
import { Course } from './console_course.js';
import { FramePanel } from './console_frame.js';
import { watch } from './console_watch.js';

const settings = JSON.parse($('console-settings').textContent);
const root = $('console');
// This tab held the seat of that meeting: a reload takes it back if nobody took it meanwhile.
const SEAT_KEY = 'hnth.console.seat';
const MEETING_KEY = 'hnth.console.meeting';

const state = {
  sites: [],
  meetings: [],
  bookings: [],
  states: new Map(), // meeting id -> its last meeting_state
  current: null, // the meeting this console follows
  info: null, // its {id, title}, as the media calls know it
  mode: null, // 'seat' (camera and microphone) or 'watch'
  opening: false,
  seatNote: '',
};

function showError(text) {
  $('console-error-text').textContent = text;
  $('console-error').hidden = !text;
}
$('console-error-close').addEventListener('click', () => showError(''));

const live = new Live({
  grid: $('grid'),
  onError: (msg) => {
    if (msg.ref === 'open_meeting') state.opening = false;
    showError(refusalText(msg));
  },
  onConnection: (up) => showError(up ? '' : t(live.hnth.stopping ? 'server_restarting' : 'connection_lost')),
  onMessage: (msg) => handle(msg),
});
live.hnth.mode = null;
live.hnth.meetingState = null;

const send = (msg) => live.send(msg);
const command = (cmd) => state.current && send({ type: 'command', meeting: state.current, command: cmd });

/** Opens a meeting (`open_meeting`); this console then takes its seat, leaving the one it had. */
function openMeeting(msg) {
  if (state.mode === 'seat' && !confirm(t('con_confirm_switch'))) return;
  showError('');
  state.opening = true;
  send({ type: 'open_meeting', ...msg });
}

const today = new Today({
  open: (b) => openMeeting({ booking: b.id }),
  follow: (meeting) => follow(meeting),
  emergency: ({ title, chair, sites }) => openMeeting({ title, chair, sites }),
  error: (text) => showError(text),
});

const table = new SitesTable({
  link: settings.link,
  act: (kind, site, name) => {
    if (!state.current) return;
    if (kind === 'dial') send({ type: 'dial', meeting: state.current, site });
    else if (kind === 'hangup') {
      if (confirm(t('con_confirm_hangup', { site: name }))) send({ type: 'hangup', meeting: state.current, site });
    } else command({ type: kind, site });
  },
});

const course = new Course({ command });

/** The MediaStream this console has of a cell's site: received, or its own camera. */
function streamOf(cell) {
  if (!cell.stream) return null;
  const own = state.mode === 'seat' && meetingState() && cell.site === meetingState().cc_site;
  return own ? live.local : live.hnth.streams.get(cell.stream) || null;
}
const frame = new FramePanel({ command, streamOf });

const meetingState = () => (state.current ? state.states.get(state.current) : null);
const meetingOf = (id) => state.meetings.find((m) => m.id === id);

async function handle(msg) {
  switch (msg.type) {
    case 'welcome':
      // A new connection: the server knows nothing of our media any more; `meetings` follows
      // and the meeting is entered again.
      if (state.current) leave();
      break;
    case 'sites':
      state.sites = msg.list;
      live.hnth.sites = msg.list;
      today.renderSites(msg.list);
      render();
      break;
    case 'meetings':
      state.meetings = msg.list;
      live.hnth.meetings = msg.list;
      for (const id of state.states.keys()) if (!meetingOf(id)) state.states.delete(id);
      if (state.current && !meetingOf(state.current)) leave();
      if (!state.current && !state.opening && msg.list.length) {
        const last = Number(sessionStorage.getItem(MEETING_KEY));
        await enter(meetingOf(last) || msg.list[0], false);
      }
      render();
      break;
    case 'meeting_opened':
      if (state.opening) {
        state.opening = false;
        today.resetEmergency();
        if (state.current) leave();
        await enter(msg.meeting, true);
      }
      break;
    case 'meeting_closed':
      if (sessionStorage.getItem(SEAT_KEY) === String(msg.meeting)) sessionStorage.removeItem(SEAT_KEY);
      state.states.delete(msg.meeting);
      if (state.current === msg.meeting) leave();
      render();
      break;
    case 'meeting_state':
      state.states.set(msg.meeting, msg);
      if (msg.meeting === state.current) {
        live.hnth.meetingState = msg;
        render();
      }
      break;
    case 'bookings':
      state.bookings = msg.list;
      live.hnth.bookings = msg.list;
      today.renderBookings(msg.list, state.current);
      break;
    case 'seat_lost':
      if (msg.meeting === state.current && state.mode === 'seat') {
        sessionStorage.removeItem(SEAT_KEY);
        state.seatNote = t('con_seat_lost', { user: msg.by });
        await startWatching();
      }
      break;
    case 'unheard':
      if (msg.meeting === state.current) {
        table.flagUnheard(msg.site);
        markTiles();
      }
      break;
    case 'participants':
      markTiles();
      frame.attachStreams();
      break;
    case 'stats':
      live.hnth.stats = msg.list;
      table.renderStats(msg.list);
      // Streams arrive after the state that names them: the preview picks them up.
      frame.attachStreams();
      break;
    case 'alert':
      showAlert(msg);
      break;
  }
}

/** B5: an emergency meeting was registered; the banner stays until the page is left. */
function showAlert(msg) {
  const el = $('alert-banner');
  const a = document.createElement('a');
  a.href = `/bookings/${msg.booking}`;
  a.textContent = `${t('alert_emergency')}: ${msg.title}`;
  el.replaceChildren(a);
  el.hidden = false;
}

/** Follows meeting `m`: in the seat if `seat` (this console opened it), or if this tab held
 * the seat before a reload and nobody took it since; watching otherwise. */
async function enter(m, seat) {
  state.current = m.id;
  state.info = { id: m.id, title: m.title };
  state.seatNote = '';
  live.hnth.state = 'in_meeting';
  live.hnth.meetingState = state.states.get(m.id) || null;
  sessionStorage.setItem(MEETING_KEY, String(m.id));
  $('today').open = false;
  today.renderBookings(state.bookings, state.current);
  const listed = meetingOf(m.id);
  const free = !listed || !listed.seat;
  const mine = seat || (free && sessionStorage.getItem(SEAT_KEY) === String(m.id));
  render();
  if (mine) await takeSeat();
  else await startWatching();
}

function leave() {
  state.current = null;
  state.mode = null;
  live.hnth.mode = null;
  live.hnth.state = 'idle';
  live.hnth.meetingState = null;
  live.stopMedia();
  $('self-view').replaceChildren();
  $('today').open = true;
  today.renderBookings(state.bookings, state.current);
  render();
}

/** Another live meeting, chosen by the operator. */
async function follow(id) {
  const m = meetingOf(id);
  if (!m || id === state.current) return;
  if (state.mode === 'seat' && !confirm(t('con_confirm_switch'))) {
    $('meeting-select').value = String(state.current);
    return;
  }
  if (state.mode === 'seat') sessionStorage.removeItem(SEAT_KEY);
  leave();
  await enter(m, false);
}

/** The control center's seat: this console sends its camera and microphone. */
async function takeSeat() {
  const m = state.info;
  state.mode = 'seat';
  live.hnth.mode = 'seat';
  state.seatNote = '';
  sessionStorage.setItem(SEAT_KEY, String(m.id));
  $('self-view').replaceChildren();
  await live.startMedia(m);
  if (!live.hnth.pc) {
    // No camera or microphone here: the error says so, and the meeting is still watched.
    sessionStorage.removeItem(SEAT_KEY);
    await startWatching();
    return;
  }
  // The operator's own picture is a small self-view by the seat, not a tile of the wall.
  const self = $('grid').querySelector('figure.self');
  if (self) $('self-view').replaceChildren(self);
  render();
}

async function startWatching() {
  const m = state.info;
  state.mode = 'watch';
  live.hnth.mode = 'watch';
  $('self-view').replaceChildren();
  // A console that watches holds no camera or microphone (one that left the seat lets go).
  if (live.local) for (const track of live.local.getTracks()) track.stop();
  live.local = null;
  await watch(live, m, () => {
    // A failed connection is made again, in the same mode.
    if (state.current === m.id && state.mode === 'watch') startWatching();
  });
  render();
}

$('take-seat').addEventListener('click', () => takeSeat());
$('meeting-select').addEventListener('change', (e) => follow(Number(e.target.value)));
$('dial-all').addEventListener('click', () => state.current && send({ type: 'dial_all', meeting: state.current }));
$('close-meeting').addEventListener('click', () => {
  if (state.current && confirm(t('confirm_close'))) send({ type: 'close_meeting', meeting: state.current });
});

/** The monitor's tiles show who holds the floor and who speaks without it. */
function markTiles() {
  const st = meetingState();
  const siteOf = new Map((live.hnth.participants || []).map((p) => [p.stream, p.site_id]));
  for (const fig of $('grid').querySelectorAll('figure[data-stream]')) {
    const site = siteOf.get(fig.dataset.stream);
    fig.classList.toggle('floor', !!st && st.floor.includes(site));
    fig.classList.toggle('unheard', table.isUnheard(site));
  }
}

function render() {
  const st = meetingState();
  const inMeeting = !!state.current;
  root.dataset.mode = inMeeting ? 'meeting' : 'idle';
  $('meeting-bar').hidden = !inMeeting;
  $('col-frame').hidden = !st;
  $('floor-bar').hidden = !st;
  $('course').hidden = !st;
  table.render(state.sites, st);
  renderBar(st);
  if (st) {
    course.render(st);
    frame.render(st);
    markTiles();
  }
}

function renderBar(st) {
  const m = meetingOf(state.current);
  const select = $('meeting-select');
  select.hidden = state.meetings.length < 2;
  select.replaceChildren(...state.meetings.map((x) => new Option(x.title, String(x.id), false, x.id === state.current)));
  $('meeting-name').textContent = (st && st.title) || (m && m.title) || '';
  const emergency = !!(st ? st.emergency : m && m.emergency);
  $('meeting-bar').classList.toggle('emergency', emergency);
  const facts = [];
  if (emergency) facts.push(t('con_kind_emergency'));
  if (st) {
    const chairSite = st.sites.find((s) => s.id === st.chair_site);
    const where = chairSite ? chairSite.name : '';
    facts.push(`${t('con_chair')}: ${st.chair ? `${st.chair}${where ? ` (${where})` : ''}` : where}`);
    const b = state.bookings.find((x) => x.id === st.booking);
    if (b) facts.push(`${t('con_official')} ${clock(b.official_start).time}–${clock(b.official_end).time}`);
    const sites = st.sites.filter((s) => !s.control_center);
    facts.push(t('con_connected_n', { n: sites.filter((s) => s.connected).length, of: sites.length }));
  }
  const line = $('meeting-facts');
  line.replaceChildren(facts.join(' · '));
  if (st) {
    const a = document.createElement('a');
    a.href = `/bookings/${st.booking}`;
    a.textContent = t('con_booking_link', { id: st.booking });
    line.append(' · ', a);
  }

  // The seat.
  const status = $('seat-status');
  const seat = st ? st.seat : m && m.seat;
  status.classList.toggle('free', state.mode === 'watch' && !seat);
  if (state.mode === 'seat') status.textContent = t('con_seat_mine');
  else if (state.mode === 'watch') {
    const who = seat ? t('con_seat_by', { user: seat }) : t('con_seat_free');
    status.textContent = [state.seatNote || t('con_seat_watch'), who].join(' ');
  } else status.textContent = '';
  $('take-seat').hidden = state.mode !== 'watch';

  // "Kết nối tất cả" calls the meeting's sites that are not connected (and, in an emergency,
  // every site online and free): nothing to do when they all are.
  let callable = false;
  if (st) {
    const presence = new Map(state.sites.map((s) => [s.id, s.presence]));
    const online = (id) => presence.has(id) && presence.get(id) !== 'offline';
    callable = st.sites.some((s) => !s.control_center && !s.connected && online(s.id))
      || (st.emergency && state.sites.some((s) => s.presence === 'idle' && !st.sites.some((x) => x.id === s.id)));
  }
  $('dial-all').disabled = !callable;
  $('dial-all').title = callable ? '' : t('con_all_connected');
  $('close-meeting').disabled = !state.current;
}

live.connect();
