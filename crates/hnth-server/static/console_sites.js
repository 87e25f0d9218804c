// The sites table: every site's presence, its place in the meeting this console follows, its
// microphone at the server (C4: given and taken here), and its live link figures coloured at the
// province's thresholds (C2). "Kết nối" sits by the presence, "Ngắt" at the row's far end.
import { t, formatNumber } from './live.js';
import { $, setText } from './console_util.js';

const fmt = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(Number(v)) ? '–' : formatNumber(Number(v), digits));

/** 'warn', 'alarm' or '' for a figure against its [warn, alarm] thresholds. */
function level(value, [warn, alarm]) {
  if (value === null || value === undefined) return '';
  if (value >= alarm) return 'alarm';
  return value >= warn ? 'warn' : '';
}

export class SitesTable {
  /** `act(kind, site)` for the row's buttons: 'dial', 'hangup', 'give_floor', 'take_floor'. */
  constructor({ link, act }) {
    this.body = $('site-rows');
    this.template = $('site-row');
    this.link = link;
    this.unheard = new Map(); // site id -> timer of its highlight
    this.body.addEventListener('click', (e) => {
      const button = e.target.closest('button');
      const row = e.target.closest('tr[data-site-id]');
      if (!button || !row) return;
      const site = Number(row.dataset.siteId);
      if (button.classList.contains('dial')) act('dial', site);
      else if (button.classList.contains('hangup')) act('hangup', site, row.querySelector('.site-name').textContent);
      else if (button.classList.contains('floor-button')) act(button.dataset.command, site);
    });
  }

  row(id, name) {
    let row = this.body.querySelector(`tr[data-site-id="${id}"]`);
    if (!row) {
      row = this.template.content.firstElementChild.cloneNode(true);
      row.dataset.siteId = id;
      this.body.append(row);
    }
    setText(row.querySelector('.site-name'), name);
    return row;
  }

  /** `sites`: the registry's sites with their presence; `state`: the meeting_state of the
   * meeting this console follows, or null. */
  render(sites, state) {
    const inMeeting = new Map((state ? state.sites : []).map((s) => [s.id, s]));
    const order = [];
    // The control center's own site is a site of every meeting (the chair's, in an emergency).
    const cc = state && state.sites.find((s) => s.control_center);
    if (cc) order.push(this.renderRow(this.row(cc.id, cc.name), { id: cc.id, presence: 'in_meeting' }, cc, state));
    const mine = sites.filter((s) => inMeeting.has(s.id));
    const others = sites.filter((s) => !inMeeting.has(s.id));
    for (const s of [...mine, ...others]) {
      order.push(this.renderRow(this.row(s.id, s.name), s, inMeeting.get(s.id), state));
    }
    // The meeting's sites first; a row left from a site no longer listed goes.
    for (const row of this.body.querySelectorAll('tr[data-site-id]')) {
      if (!order.includes(row)) row.remove();
    }
    order.forEach((row, i) => {
      if (this.body.children[i] !== row) this.body.insertBefore(row, this.body.children[i] || null);
    });
  }

  renderRow(row, s, part, state) {
    const badge = row.querySelector('.presence');
    const connected = !!(part && part.connected);
    badge.dataset.presence = s.presence;
    badge.dataset.media = s.media || '';
    let label = t(`presence_${s.presence}`);
    if (part && !connected && s.presence !== 'offline') label = t('con_connecting');
    // The site's line is cut: its place in the meeting is kept, it comes back by itself.
    if (s.media === 'interrupted') label = t('con_interrupted');
    setText(badge, label);
    row.classList.toggle('outside', !!state && !part);
    const chair = !!(part && part.chair);
    row.querySelector('.chair-tag').hidden = !chair;

    const dial = row.querySelector('.dial');
    // Without a meeting there is nothing to connect a site to.
    dial.hidden = !state || (!!part && (connected || !!part.control_center));
    dial.disabled = !state || s.presence === 'offline' || (part && connected) || (s.meeting && state && s.meeting !== state.meeting);
    dial.title = part ? t('con_redial_tip') : t('con_dial_tip');
    const hangup = row.querySelector('.hangup');
    hangup.hidden = !part || !!part.control_center;
    hangup.disabled = !part || chair;
    hangup.title = chair ? t('con_hangup_chair') : '';

    const mic = row.querySelector('.mic');
    const button = row.querySelector('.floor-button');
    const holds = !!state && state.floor.includes(s.id);
    row.classList.toggle('holds-floor', holds);
    if (!part || !connected) {
      mic.className = 'mic';
      setText(mic, part ? '–' : '');
      button.hidden = true;
    } else {
      // The chair's site heard without the floor needs no button; a closed microphone is said
      // by the button that opens it.
      const always = part.heard && !holds;
      mic.className = `mic${part.heard ? ' open' : ''}${always ? ' always' : ''}`;
      setText(mic, always ? t('con_mic_chair') : part.heard ? t('con_mic_open') : '');
      mic.title = part.heard ? '' : t('con_mic_closed');
      button.hidden = always;
      button.dataset.command = holds ? 'take_floor' : 'give_floor';
      setText(button, holds ? t('con_take_floor') : t('con_give_floor'));
      button.classList.toggle('danger-outline', holds);
    }
    return row;
  }

  /** The link figures (`stats`, every second), coloured at the thresholds. */
  renderStats(list) {
    for (const row of this.body.querySelectorAll('tr[data-site-id]')) {
      const s = list.find((x) => String(x.site_id) === row.dataset.siteId && x.kind !== 'watch');
      const cell = (cls, text, lvl = '', title = '') => {
        const td = row.querySelector(cls);
        setText(td, text);
        td.classList.toggle('warn', lvl === 'warn');
        td.classList.toggle('alarm', lvl === 'alarm');
        if (td.title !== title) td.title = title;
      };
      if (!s) {
        for (const c of ['.rtt', '.loss', '.jitter', '.kin', '.kout', '.res', '.fps']) cell(c, '–');
        continue;
      }
      const loss = [s.loss_in, s.loss_out].filter((x) => x !== null && x !== undefined);
      const worst = loss.length ? Math.max(...loss) * 100 : null;
      const lossTip = loss.length
        ? t('con_loss_tip', { in: fmt(s.loss_in === null ? null : s.loss_in * 100, 1), out: fmt(s.loss_out === null ? null : s.loss_out * 100, 1) })
        : '';
      cell('.rtt', fmt(s.rtt_ms), level(s.rtt_ms, [this.link.rtt_warn_ms, this.link.rtt_alarm_ms]));
      cell('.loss', fmt(worst, 1), level(worst, [this.link.loss_warn_percent, this.link.loss_alarm_percent]), lossTip);
      cell('.jitter', fmt(s.jitter_ms, 1), level(s.jitter_ms, [this.link.jitter_warn_ms, this.link.jitter_alarm_ms]));
      cell('.kin', fmt(s.kbps_in));
      cell('.kout', fmt(s.kbps_out), '', s.estimate_kbps ? t('con_estimate_tip', { kbps: fmt(s.estimate_kbps) }) : '');
      cell('.res', s.width && s.height ? `${s.width}×${s.height}` : '–');
      cell('.fps', fmt(s.fps));
    }
  }

  /** `unheard`: the site speaks without the floor (dropped at the server): its row flashes and
   * its microphone shows it for a few seconds after the last report. */
  flagUnheard(site) {
    const row = this.body.querySelector(`tr[data-site-id="${site}"]`);
    if (!row) return;
    clearTimeout(this.unheard.get(site));
    row.classList.remove('unheard');
    void row.offsetWidth; // restart the flash
    row.classList.add('unheard');
    this.unheard.set(site, setTimeout(() => {
      row.classList.remove('unheard');
      this.unheard.delete(site);
    }, 3000));
  }

  isUnheard(site) {
    return this.unheard.has(site);
  }
}
