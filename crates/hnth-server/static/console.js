// The control-center console: sites with presence, meetings, dialing, the video grid with
// sound, and every site's live link figures.
import { Live, t, errorText } from './live.js';

const $ = (id) => document.getElementById(id);
const errorEl = $('console-error');
let current = null; // the meeting this console shows
let opening = false;

function showError(text) {
  errorEl.textContent = text;
  errorEl.hidden = !text;
}

const live = new Live({
  grid: $('grid'),
  onError: (msg) => showError(`${t('error_prefix')}: ${errorText(msg)}`),
  onConnection: (up) => showError(up ? '' : t('connection_lost')),
  onMessage: async (msg) => {
    switch (msg.type) {
      case 'sites':
        live.hnth.sites = msg.list;
        renderSites(msg.list);
        break;
      case 'meetings': {
        live.hnth.meetings = msg.list;
        const still = current && msg.list.find((m) => m.id === current.id);
        if (!still) {
          if (current) leaveMeeting();
          if (msg.list.length && !opening) await enterMeeting(msg.list[0]);
        }
        renderControls();
        break;
      }
      case 'meeting_opened':
        if (opening) {
          opening = false;
          await enterMeeting(msg.meeting);
        }
        break;
      case 'meeting_closed':
        if (current && current.id === msg.meeting) leaveMeeting();
        break;
      case 'alert':
        showAlert(msg);
        break;
      case 'stats':
        live.hnth.stats = msg.list;
        renderStats(msg.list);
        break;
    }
  },
});

/** B5: an emergency meeting was registered; the banner stays until the operator opens it. */
function showAlert(msg) {
  const el = $('alert-banner');
  el.replaceChildren();
  const a = document.createElement('a');
  a.href = `/bookings/${msg.booking}`;
  a.textContent = `${t('alert_emergency')}: ${msg.title}`;
  el.append(a);
  el.hidden = false;
}

async function enterMeeting(m) {
  current = m;
  live.hnth.state = 'in_meeting';
  $('meeting-status').textContent = `${t('meeting_on')}: ${m.title}`;
  renderControls();
  await live.startMedia(m);
}

function leaveMeeting() {
  current = null;
  live.hnth.state = 'idle';
  live.stopMedia();
  $('meeting-status').textContent = t('no_meeting');
  renderControls();
}

function renderControls() {
  $('dial-all').disabled = !current;
  $('close-meeting').disabled = !current;
  $('open-meeting').disabled = !!current;
  renderSites(live.hnth.sites || []);
}

function renderSites(list) {
  const body = $('site-rows');
  for (const s of list) {
    let row = body.querySelector(`tr[data-site-id="${s.id}"]`);
    if (!row) row = newRow(body, s);
    const badge = row.querySelector('.presence');
    badge.dataset.presence = s.presence;
    badge.dataset.media = s.media;
    badge.textContent = t(`presence_${s.presence}`) + (s.media === 'connecting' ? ` (${t('media_connecting')})` : '');
    const inThis = current && s.meeting === current.id;
    row.querySelector('.dial').disabled = !current || s.presence === 'offline' || inThis;
    row.querySelector('.hangup').disabled = !inThis;
  }
}

/** A site added to the registry after this page was loaded. */
function newRow(body, s) {
  const row = document.createElement('tr');
  row.dataset.siteId = s.id;
  row.innerHTML = `<td class="name"></td><td><span class="presence"></span></td>
    <td class="actions"><button class="dial"></button> <button class="hangup"></button></td>
    <td class="rtt">–</td><td class="loss">–</td><td class="jitter">–</td><td class="kin">–</td><td class="kout">–</td><td class="res">–</td><td class="fps">–</td>`;
  row.querySelector('.name').textContent = s.name;
  row.querySelector('.dial').textContent = t('dial');
  row.querySelector('.hangup').textContent = t('hangup');
  body.append(row);
  return row;
}

const fmt = (v, digits = 0, unit = '') => (v === null || v === undefined ? '–' : `${Number(v).toFixed(digits)}${unit}`);

function renderStats(list) {
  const body = $('site-rows');
  for (const row of body.querySelectorAll('tr[data-site-id]')) {
    const s = list.find((x) => String(x.site_id) === row.dataset.siteId);
    const set = (cls, text) => { row.querySelector(cls).textContent = text; };
    set('.rtt', s ? fmt(s.rtt_ms, 0, ' ms') : '–');
    set('.loss', s && s.loss_in !== null ? fmt(s.loss_in * 100, 1, ' %') : '–');
    set('.jitter', s ? fmt(s.jitter_ms, 1, ' ms') : '–');
    set('.kin', s ? fmt(s.kbps_in, 0, ' kbit/s') : '–');
    set('.kout', s ? fmt(s.kbps_out, 0, ' kbit/s') : '–');
    set('.res', s && s.width ? `${s.width}×${s.height}` : '–');
    set('.fps', s ? fmt(s.fps, 0) : '–');
  }
}

$('open-meeting').onclick = () => {
  const title = $('meeting-title').value.trim();
  if (!title) {
    showError(t('meeting_title') + ': ' + t('err_bad_request'));
    $('meeting-title').focus();
    return;
  }
  showError('');
  opening = true;
  live.send({ type: 'open_meeting', title });
};
$('dial-all').onclick = () => current && live.send({ type: 'dial_all', meeting: current.id });
$('close-meeting').onclick = () => {
  if (current && confirm(t('confirm_close'))) live.send({ type: 'close_meeting', meeting: current.id });
};
$('site-rows').addEventListener('click', (e) => {
  const row = e.target.closest('tr[data-site-id]');
  if (!row || !current) return;
  const site = Number(row.dataset.siteId);
  if (e.target.classList.contains('dial')) live.send({ type: 'dial', meeting: current.id, site });
  if (e.target.classList.contains('hangup')) live.send({ type: 'hangup', meeting: current.id, site });
});

live.connect();
