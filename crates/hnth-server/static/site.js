// The site app: runs unattended in the meeting room. It never joins by itself; it answers the
// control center's call (C6) and shows the frame the control center sets for every screen
// (C1). Its technician asks the floor for the room's delegates (C8) and reports the roll call
// from a small toolbar; whether the room is heard is the server's decision (C4), shown here.
import { Live, t, errorText, escapeHtml, formatTime, formatWait } from './live.js';

const $ = (id) => document.getElementById(id);
const idle = $('idle');
const liveEl = $('live');
const banner = $('meeting-banner');
const status = $('idle-status');
const errorEl = $('site-error');

// An error goes away when its condition passes (the connection is back), a one-off refusal
// after a while: nobody in the room can dismiss it.
const ERROR_MS = 10_000;
let errorTimer = null;
let errorSticky = false;

function showError(text, { sticky = false } = {}) {
  clearTimeout(errorTimer);
  errorEl.textContent = text;
  errorEl.hidden = !text;
  errorSticky = !!text && sticky;
  if (text && !sticky) errorTimer = setTimeout(() => showError(''), ERROR_MS);
}

/** A new screen (a meeting starts or ends): a one-off error of the last one is over. */
function clearOneOffError() {
  if (!errorSticky) showError('');
}

let site = null; // this site: {id, code, name}
let meetingId = null; // the meeting the control center connected this site to
// A command sent from a form, until the meeting's state shows it done or the server refuses
// it: {form, done(state) → text or null}.
let pending = null;

const live = new Live({
  grid: $('grid'),
  frame: true,
  onError: (msg) => {
    if (msg.ref === 'command' && pending) {
      formMessage(pending.form, errorText(msg), true);
      pending = null;
      return;
    }
    showError(`${t('error_prefix')}: ${errorText(msg)}`);
  },
  onConnection: (up) => showError(up ? '' : t(live.hnth.stopping ? 'server_restarting' : 'connection_lost'), { sticky: !up }),
  onMessage: async (msg) => {
    switch (msg.type) {
      case 'welcome':
        site = msg.site || null;
        if (msg.site) {
          $('site-name').textContent = msg.site.name;
          $('room-rules').textContent = msg.site.room_rules || '';
        }
        if (msg.meeting) meetingId = msg.meeting.id;
        else setIdle();
        break;
      case 'join':
        meetingId = msg.meeting.id;
        live.hnth.state = 'in_meeting';
        clearOneOffError();
        idle.hidden = true;
        liveEl.hidden = false;
        banner.textContent = msg.meeting.title;
        // The site answered the emergency call it was alerted to: the alert's work is done.
        if (alertBooking === msg.meeting.booking) hideAlert();
        joinedBooking = msg.meeting.booking;
        $('video-paused').hidden = true;
        showMeeting();
        await live.startMedia(msg.meeting);
        break;
      case 'meeting_state':
        if (msg.meeting === meetingId) showMeeting();
        break;
      case 'frame':
        showSelfView();
        break;
      case 'alert': {
        const el = $('alert-banner');
        el.textContent = `${t('alert_emergency')}: ${msg.title}`;
        el.hidden = false;
        alertBooking = msg.booking;
        break;
      }
      case 'send_video':
        $('video-paused').hidden = msg.on !== false;
        break;
      case 'leave':
        live.stopMedia();
        // Hung up from the meeting the alert was about: nothing of it stays on the kiosk.
        if (alertBooking === joinedBooking) hideAlert();
        joinedBooking = null;
        setIdle();
        break;
    }
  },
});

/** The emergency alert's booking, while the alert is shown; the booking of the meeting joined. */
let alertBooking = null;
let joinedBooking = null;

function hideAlert() {
  $('alert-banner').hidden = true;
  $('alert-banner').textContent = '';
  alertBooking = null;
}

/** The room's camera in the bar while no cell of the frame shows it. */
function showSelfView() {
  const f = live.hnth.frame;
  const shown = !!(f && site && live.local && !f.cells.some((c) => c.site === site.id));
  const video = $('self-view');
  video.hidden = !shown;
  const stream = shown ? live.local : null;
  if (video.srcObject !== stream) video.srcObject = stream;
}

function setIdle() {
  live.hnth.state = 'idle';
  meetingId = null;
  pending = null;
  idle.hidden = false;
  liveEl.hidden = true;
  closePanel();
  // Nothing of the last meeting stays behind.
  banner.textContent = '';
  clearOneOffError();
  $('video-paused').hidden = true;
  $('floor-state').hidden = true;
  showSelfView();
  $('my-requests').replaceChildren();
  resetRollCall();
  status.textContent = `${t('site_idle')} ${t('site_waiting')}`;
}

function meetingState() {
  return meetingId === null ? null : live.hnth.states[meetingId] || null;
}

/** What the meeting's state says about this room: its microphone, its speak requests, its
 * roll call; and whether the command a form sent is done. */
function showMeeting() {
  const st = meetingState();
  if (!st || !site) return;
  const me = st.sites.find((s) => s.id === site.id);
  showFloor(st, me);
  showRequests(st);
  showRollCall(st);
  if (pending) {
    const done = pending.done(st);
    if (done) {
      const { form } = pending;
      pending = null;
      formMessage(form, done, false);
    }
  }
}

// ------------------------------------------------------------------ the floor (C4)

function showFloor(st, me) {
  const el = $('floor-state');
  el.hidden = !me;
  if (!me) return;
  let text;
  if (!me.connected) text = t('site_mic_connecting');
  else if (me.heard) text = me.chair ? t('site_mic_open_chair') : t('site_mic_open');
  else text = st.lecture ? t('site_mic_closed_lecture') : t('site_mic_closed');
  el.textContent = text;
  el.dataset.heard = me.connected && me.heard ? 'true' : 'false';
}

// ------------------------------------------------------------------ the panels

const panel = $('site-panel');
const PANELS = { requests: [$('requests-panel'), $('open-requests')], roll: [$('roll-call-panel'), $('open-roll-call')] };
// Left alone, a panel gives the whole screen back to the meeting.
const PANEL_IDLE_MS = 120_000;
let panelTimer = null;
let shown = null;

function showPanel(name) {
  if (shown === name) {
    closePanel();
    return;
  }
  shown = name;
  for (const [key, [section, button]] of Object.entries(PANELS)) {
    section.hidden = key !== name;
    button.setAttribute('aria-expanded', String(key === name));
  }
  panel.hidden = false;
  if (name === 'roll' && !rollRows('present').length && !rollRows('absent').length) addRow('present');
  const first = PANELS[name][0].querySelector('input');
  if (first) first.focus();
  keepPanel();
}

function closePanel() {
  clearTimeout(panelTimer);
  const wasOpen = shown;
  shown = null;
  panel.hidden = true;
  for (const [section, button] of Object.values(PANELS)) {
    section.hidden = true;
    button.setAttribute('aria-expanded', 'false');
  }
  if (wasOpen) PANELS[wasOpen][1].focus();
}

function keepPanel(ms = PANEL_IDLE_MS) {
  clearTimeout(panelTimer);
  panelTimer = setTimeout(closePanel, ms);
}

$('open-requests').onclick = () => showPanel('requests');
$('open-roll-call').onclick = () => showPanel('roll');
for (const b of panel.querySelectorAll('button.close')) b.onclick = closePanel;
for (const ev of ['input', 'keydown', 'pointerdown', 'focusin']) panel.addEventListener(ev, () => keepPanel());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && shown) closePanel();
});

/** A form's outcome, in the form: a refusal (in Vietnamese, with its article) or what was done. */
function formMessage(form, text, isError) {
  const err = form.querySelector('.form-error');
  const done = form.querySelector('.form-done');
  err.textContent = isError ? text : '';
  err.hidden = !isError || !text;
  done.textContent = isError ? '' : text;
  done.hidden = isError || !text;
}

/** The server's limits of a name, a position or a reason (docs/SIGNALING.md §2.2), checked
 * before sending so that the technician learns at once what to fix. */
const MAX_TEXT = 120;
function textError(label, value, required) {
  if (required && !value) return t('site_err_required', { field: label });
  if ([...value].length > MAX_TEXT) return t('site_err_too_long', { field: label, max: MAX_TEXT });
  return null;
}

function send(form, command, done) {
  if (meetingId === null || !site) {
    formMessage(form, t('site_err_no_meeting'), true);
    return;
  }
  formMessage(form, '', false);
  pending = { form, done };
  live.send({ type: 'command', meeting: meetingId, command: { ...command, site: site.id } });
}

// ------------------------------------------------------------------ speak requests (C8)

const requestForm = $('request-form');
let requestsAt = 0; // when the queue's waiting times were read

requestForm.onsubmit = (e) => {
  e.preventDefault();
  const delegate = requestForm.delegate.value.trim();
  const position = requestForm.position.value.trim();
  const err = textError(t('site_delegate'), delegate, true) || textError(t('site_position'), position, false);
  if (err) {
    formMessage(requestForm, err, true);
    (textError(t('site_delegate'), delegate, true) ? requestForm.delegate : requestForm.position).focus();
    return;
  }
  send(requestForm, { type: 'request_floor', delegate, position }, (st) => {
    const mine = st.queue.some((q) => q.site === site.id && q.delegate.toLowerCase() === delegate.toLowerCase());
    if (!mine) return null;
    requestForm.reset();
    return t('site_request_sent', { delegate });
  });
};

function showRequests(st) {
  const mine = st.queue.filter((q) => q.site === site.id);
  requestsAt = Date.now();
  const list = $('my-requests');
  list.replaceChildren(...mine.map((q) => {
    const li = document.createElement('li');
    li.dataset.request = q.id;
    li.dataset.state = q.state;
    li.dataset.waiting = q.waiting_s;
    li.innerHTML = `<span class="who"><strong></strong> <span class="position"></span></span>
      <span class="state"></span> <span class="wait"></span>
      <button type="button" class="withdraw secondary"></button>`;
    li.querySelector('strong').textContent = q.delegate;
    li.querySelector('.position').textContent = q.position ? `· ${q.position}` : '';
    li.querySelector('.state').textContent = q.passed ? t('site_request_passed') : t('site_request_waiting');
    li.querySelector('.withdraw').textContent = t('site_request_withdraw');
    li.querySelector('.withdraw').title = t('site_request_withdraw_title', { delegate: q.delegate });
    return li;
  }));
  tickWaits();
  $('no-requests').hidden = mine.length > 0;
  const count = $('request-count');
  count.textContent = String(mine.length);
  count.hidden = mine.length === 0;
}

function tickWaits() {
  const extra = (Date.now() - requestsAt) / 1000;
  for (const li of $('my-requests').children) {
    li.querySelector('.wait').textContent = t('site_request_wait', { time: formatWait(Number(li.dataset.waiting) + extra) });
  }
}
setInterval(tickWaits, 1000);

$('my-requests').addEventListener('click', (e) => {
  const button = e.target.closest('button.withdraw');
  if (!button || meetingId === null) return;
  const request = Number(button.closest('li').dataset.request);
  pending = { form: requestForm, done: (st) => (st.queue.some((q) => q.id === request) ? null : t('site_request_withdrawn')) };
  formMessage(requestForm, '', false);
  live.send({ type: 'command', meeting: meetingId, command: { type: 'withdraw', request } });
});

// ------------------------------------------------------------------ roll call

const rollForm = $('roll-call-form');
// Typed but not sent yet: a new state does not overwrite the technician's work.
let rollDirty = false;
let rollAt = null; // when the report shown was made

function rollRows(kind) {
  return [...$(`${kind}-rows`).children];
}

function addRow(kind, d = { name: '', position: '', reason: '' }) {
  const li = document.createElement('li');
  li.className = 'row';
  const field = (name, label, value) =>
    `<input name="${name}" maxlength="${MAX_TEXT}" autocomplete="off" placeholder="${escapeHtml(label)}" aria-label="${escapeHtml(label)}" value="${escapeHtml(value)}">`;
  li.innerHTML = field('name', t('site_delegate'), d.name) + field('position', t('site_position'), d.position)
    + (kind === 'absent' ? field('reason', t('site_roll_reason'), d.reason) : '')
    + `<button type="button" class="remove secondary" aria-label="${escapeHtml(t('site_roll_remove'))}" title="${escapeHtml(t('site_roll_remove'))}">×</button>`;
  $(`${kind}-rows`).append(li);
  return li;
}

function resetRollCall() {
  rollDirty = false;
  rollAt = null;
  $('present-rows').replaceChildren();
  $('absent-rows').replaceChildren();
  formMessage(rollForm, '', false);
  $('roll-call-done').hidden = true;
  $('roll-call-status').textContent = t('site_roll_not_sent');
}

$('add-present').onclick = () => addRow('present').querySelector('input').focus();
$('add-absent').onclick = () => addRow('absent').querySelector('input').focus();
rollForm.addEventListener('input', () => { rollDirty = true; });
rollForm.addEventListener('click', (e) => {
  const button = e.target.closest('button.remove');
  if (!button) return;
  button.closest('li').remove();
  rollDirty = true;
});

function showRollCall(st) {
  const report = (st.roll_call || {})[site.id];
  $('roll-call-done').hidden = !report;
  $('roll-call-status').textContent = report
    ? t('site_roll_sent_at', { time: formatTime(report.at), present: report.present.length, absent: report.absent.length })
    : t('site_roll_not_sent');
  // The last report, ready to be corrected and sent again.
  if (report && !rollDirty && report.at !== rollAt) {
    rollAt = report.at;
    $('present-rows').replaceChildren();
    $('absent-rows').replaceChildren();
    for (const d of report.present) addRow('present', d);
    for (const d of report.absent) addRow('absent', d);
  }
}

rollForm.onsubmit = (e) => {
  e.preventDefault();
  const read = (kind) => rollRows(kind)
    .map((li) => Object.fromEntries([...li.querySelectorAll('input')].map((i) => [i.name, i.value.trim()])))
    .map((d) => ({ name: d.name, position: d.position, reason: d.reason || '' }));
  const blank = (d) => !d.name && !d.position && !d.reason;
  const present = read('present').filter((d) => !blank(d));
  const absent = read('absent').filter((d) => !blank(d));
  const problems = [];
  for (const [list, heading, absentees] of [[present, t('site_roll_present'), false], [absent, t('site_roll_absent'), true]]) {
    list.forEach((d, i) => {
      const e = textError(t('site_delegate'), d.name, true) || textError(t('site_position'), d.position, false)
        || (absentees ? textError(t('site_roll_reason'), d.reason, true) : null);
      if (e) problems.push(`${heading}, ${t('site_roll_line', { n: i + 1 })}: ${e}`);
    });
  }
  const err = present.length + absent.length === 0 ? t('site_roll_err_empty') : problems[0];
  if (err) {
    formMessage(rollForm, err, true);
    return;
  }
  const before = ((meetingState() || {}).roll_call || {})[site && site.id];
  send(rollForm, {
    type: 'report_roll_call',
    present: present.map(({ name, position }) => ({ name, position })),
    absent,
  }, (st) => {
    const report = (st.roll_call || {})[site.id];
    if (!report || (before && report.at === before.at)) return null;
    rollDirty = false;
    rollAt = null;
    showRollCall(st);
    keepPanel(8000);
    return t('site_roll_sent', { time: formatTime(report.at) });
  });
};

// ------------------------------------------------------------------ what this site sends

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
    const { list, lang } = await r.json();
    // The site's language is set in the registry: an idle kiosk takes a change within a minute.
    if (lang && lang !== document.documentElement.lang && live.hnth.state === 'idle') {
      location.reload();
      return;
    }
    const box = $('next-meetings');
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

resetRollCall();
live.connect();
