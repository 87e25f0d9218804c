// The chair's view (chủ trì): the meetings chaired at the chair's site, live. The chair gives
// and takes the floor (C4), answers the speak requests the control center passes on (C3), and
// switches debate and lecture; the server checks every command and enforces the floor. No
// media here: the chair hears the meeting in the room.
import { Live, t, errorText, formatTime, formatWait, formatNumber } from './live.js';

const $ = (id) => document.getElementById(id);
let current = null; // the meeting shown
let readAt = 0; // when the waiting times shown were read

const ERROR_MS = 15_000;
let errorTimer = null;
function showError(text) {
  clearTimeout(errorTimer);
  const el = $('chair-error');
  el.querySelector('.text').textContent = text;
  el.hidden = !text;
  if (text) errorTimer = setTimeout(() => showError(''), ERROR_MS);
}
$('chair-error').querySelector('.dismiss').onclick = () => showError('');

let noticeTimer = null;
function showNotice(text) {
  clearTimeout(noticeTimer);
  $('chair-notice').textContent = text;
  $('chair-notice').hidden = !text;
  if (text) noticeTimer = setTimeout(() => showNotice(''), 8000);
}

// Sites heard speaking without the floor (their sound is dropped at the server), for a moment.
const unheard = new Map();

const live = new Live({
  grid: null,
  onError: (msg) => showError(errorText(msg)),
  onConnection: (up) => { $('chair-connection').hidden = up; },
  onMessage: (msg) => {
    switch (msg.type) {
      case 'meeting_state':
      case 'meeting_closed':
        render();
        break;
      case 'unheard': {
        const st = live.hnth.states[msg.meeting];
        const site = st && st.sites.find((s) => s.id === msg.site);
        showNotice(t('chair_unheard', { site: site ? site.name : `#${msg.site}` }));
        unheard.set(msg.site, Date.now());
        render();
        setTimeout(render, 8100);
        break;
      }
    }
  },
});

function command(cmd) {
  if (current === null) return;
  showError('');
  live.send({ type: 'command', meeting: current, command: cmd });
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label, action, attrs = {}, cls = '') {
  const b = el('button', cls, label);
  b.type = 'button';
  b.dataset.action = action;
  for (const [k, v] of Object.entries(attrs)) b.dataset[k] = v;
  return b;
}

function render() {
  const meetings = Object.values(live.hnth.states).sort((a, b) => a.meeting - b.meeting);
  if (!meetings.some((m) => m.meeting === current)) current = meetings.length ? meetings[0].meeting : null;
  live.hnth.shown = current;
  $('chair-none').hidden = current !== null;
  $('chair-meeting').hidden = current === null;
  const tabs = $('chair-meetings');
  tabs.hidden = meetings.length < 2;
  tabs.replaceChildren(...meetings.map((m) => {
    const b = button(m.title, 'show', { meeting: m.meeting }, 'tab');
    b.setAttribute('aria-pressed', String(m.meeting === current));
    return b;
  }));
  if (current === null) return;
  const st = live.hnth.states[current];
  const name = (id) => (st.sites.find((s) => s.id === id) || {}).name || `#${id}`;
  readAt = Date.now();

  $('chair-meeting-title').textContent = st.title;
  const connected = st.sites.filter((s) => s.connected).length;
  $('chair-meeting-sub').textContent = [
    st.chair ? t('chair_chaired_by', { chair: st.chair }) : '',
    t('chair_connected', { n: formatNumber(connected), total: formatNumber(st.sites.length) }),
  ].filter(Boolean).join(' · ');
  for (const [id, on] of [['chair-debate', st.debate], ['chair-lecture', st.lecture]]) {
    $(id).setAttribute('aria-checked', String(!!on));
  }

  // Who holds the floor now.
  const floor = $('chair-floor-list');
  floor.replaceChildren(...[...st.floor].reverse().map((id) => {
    const li = el('li', 'holder');
    li.dataset.site = id;
    li.append(el('span', 'name', name(id)), button(t('chair_take'), 'take', { site: id }, 'big secondary'));
    return li;
  }));
  if (st.lecture) {
    const li = el('li', 'holder lecture');
    li.append(el('span', 'name', `${name(st.chair_site)} — ${t('chair_lecture_on')}`));
    floor.append(li);
  }
  $('chair-floor-none').hidden = floor.children.length > 0;

  // The speak requests: those the control center passed on first (C3), oldest first.
  const queue = [...st.queue].sort((a, b) => (b.passed - a.passed) || (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  $('chair-queue').replaceChildren(...queue.map((q) => {
    const li = el('li', q.passed ? 'request passed' : 'request');
    li.dataset.request = q.id;
    li.dataset.waiting = q.waiting_s;
    const who = el('div', 'who');
    who.append(el('strong', 'delegate', q.delegate));
    if (q.position) who.append(el('span', 'position', q.position));
    who.append(el('span', 'site', q.site_name));
    const meta = el('div', 'meta');
    meta.append(el('span', 'badge', q.passed ? t('chair_passed') : t('chair_waiting_cc')), el('span', 'wait'));
    const acts = el('div', 'acts');
    acts.append(button(t('chair_grant'), 'grant', { request: q.id }, 'big grant'),
      button(t('chair_decline'), 'decline', { request: q.id }, 'secondary'));
    li.append(who, meta, acts);
    return li;
  }));
  $('chair-queue-none').hidden = queue.length > 0;
  $('chair-clear').disabled = queue.length === 0;
  $('chair-queue-count').textContent = formatNumber(queue.length);
  $('chair-queue-count').hidden = queue.length === 0;
  tickWaits();

  // Every site of the meeting: connected first, then the others.
  const sites = [...st.sites].sort((a, b) => (b.connected - a.connected));
  const roll = st.roll_call || {};
  $('chair-site-list').replaceChildren(...sites.map((s) => {
    const li = el('li', 'site');
    li.dataset.site = s.id;
    li.classList.toggle('connected', s.connected);
    li.classList.toggle('heard', s.heard);
    li.classList.toggle('floor', st.floor.includes(s.id));
    li.classList.toggle('unheard', Date.now() - (unheard.get(s.id) || 0) < 8000);
    const head = el('div', 'head');
    head.append(el('span', 'name', s.name));
    if (s.chair) head.append(el('span', 'tag', t('chair_tag_chair')));
    if (s.control_center) head.append(el('span', 'tag', t('chair_tag_cc')));
    let mic;
    if (!s.connected) mic = t('chair_site_offline');
    else mic = s.heard ? t('chair_mic_open') : t('chair_mic_closed');
    head.append(el('span', 'mic', mic));
    li.append(head);
    // A site that is not connected can be given nothing; its line stays short.
    if (!s.connected && !st.floor.includes(s.id)) return li;
    const acts = el('div', 'acts');
    if (st.floor.includes(s.id)) {
      acts.append(button(t('chair_take'), 'take', { site: s.id }, 'secondary'));
    } else {
      const give = button(t('chair_give'), 'give', { site: s.id });
      give.disabled = st.lecture && s.id !== st.chair_site;
      if (give.disabled) give.title = t('chair_lecture_on');
      acts.append(give);
    }
    li.append(acts, rollCall(roll[s.id]));
    return li;
  }));
  const reports = Object.values(roll);
  $('chair-roll-total').textContent = reports.length ? t('chair_roll_total', {
    present: formatNumber(reports.reduce((n, r) => n + r.present.length, 0)),
    absent: formatNumber(reports.reduce((n, r) => n + r.absent.length, 0)),
    sites: formatNumber(reports.length),
    total: formatNumber(st.sites.length),
  }) : '';
}

/** A site's roll call as the chair reads it: the counts, the names on demand. */
function rollCall(report) {
  if (!report) return el('p', 'roll none', t('chair_roll_none'));
  const box = el('details', 'roll');
  box.append(el('summary', '', t('chair_roll_summary', {
    present: formatNumber(report.present.length), absent: formatNumber(report.absent.length), time: formatTime(report.at),
  })));
  const present = el('ul', 'present');
  for (const d of report.present) present.append(el('li', '', d.position ? `${d.name} (${d.position})` : d.name));
  const absent = el('ul', 'absent');
  for (const d of report.absent) {
    absent.append(el('li', '', `${d.position ? `${d.name} (${d.position})` : d.name}: ${d.reason}`));
  }
  box.append(present, absent);
  return box;
}

function tickWaits() {
  const extra = (Date.now() - readAt) / 1000;
  for (const li of $('chair-queue').children) {
    li.querySelector('.wait').textContent = t('chair_wait', { time: formatWait(Number(li.dataset.waiting) + extra) });
  }
}
setInterval(tickWaits, 1000);

document.querySelector('.chair').addEventListener('click', (e) => {
  const b = e.target.closest('button[data-action]');
  if (!b) return;
  const site = Number(b.dataset.site);
  const request = Number(b.dataset.request);
  switch (b.dataset.action) {
    case 'show':
      current = Number(b.dataset.meeting);
      render();
      break;
    case 'give': command({ type: 'give_floor', site }); break;
    case 'take': command({ type: 'take_floor', site }); break;
    case 'grant': command({ type: 'grant', request }); break;
    case 'decline': command({ type: 'decline', request }); break;
  }
});
$('chair-close-all').onclick = () => command({ type: 'close_all' });
$('chair-clear').onclick = () => {
  if (confirm(t('chair_clear_confirm'))) command({ type: 'clear_requests' });
};
$('chair-debate').onclick = (e) => command({ type: 'set_debate', on: e.currentTarget.getAttribute('aria-checked') !== 'true' });
$('chair-lecture').onclick = (e) => command({ type: 'set_lecture', on: e.currentTarget.getAttribute('aria-checked') !== 'true' });

live.connect();
