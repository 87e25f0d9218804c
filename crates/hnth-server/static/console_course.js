// The meeting's course as the control center runs it: who holds the floor and how (C4: debate,
// lecture, every microphone closed), the speak requests in their order with their waiting time
// (C8 → C3: passed to the chair, granted or declined on the chair's behalf), and each site's
// roll call.
import { t } from './live.js';
import { $, h, clock, duration, setText, syncList } from './console_util.js';

export class Course {
  /** `command(cmd)` sends a command of the meeting's course (docs/SIGNALING.md §2.4). */
  constructor({ command }) {
    this.command = command;
    this.state = null;
    this.received = 0; // when the last state came (performance.now()): waiting times count on
    $('debate').addEventListener('change', (e) => command({ type: 'set_debate', on: e.target.checked }));
    $('lecture').addEventListener('change', (e) => command({ type: 'set_lecture', on: e.target.checked }));
    $('close-all').addEventListener('click', () => {
      if (confirm(t('con_confirm_close_all'))) command({ type: 'close_all' });
    });
    $('clear-requests').addEventListener('click', () => {
      if (confirm(t('con_confirm_clear'))) command({ type: 'clear_requests' });
    });
    $('queue').addEventListener('click', (e) => {
      const button = e.target.closest('button[data-command]');
      const item = e.target.closest('li[data-request]');
      if (button && item) command({ type: button.dataset.command, request: Number(item.dataset.request) });
    });
    setInterval(() => this.tick(), 1000);
  }

  render(state) {
    this.state = state;
    this.received = performance.now();
    const name = (id) => (state.sites.find((s) => s.id === id) || {}).name || `#${id}`;
    // The floor.
    const holders = [...state.floor].reverse().map(name);
    const el = $('floor-holders');
    el.classList.toggle('none', holders.length === 0);
    setText(el, state.lecture ? t('con_lecture_on', { site: name(state.chair_site) })
      : holders.length ? `${t('con_floor_holders')}: ${holders.join(', ')}` : t('con_floor_none'));
    $('debate').checked = state.debate;
    $('lecture').checked = state.lecture;
    $('close-all').disabled = state.floor.length === 0;
    const heard = $('chair-heard');
    heard.hidden = !state.chair_always_heard;
    setText(heard, t('con_chair_heard', { site: name(state.chair_site) }));
    this.renderQueue(state);
    this.renderRollCall(state);
  }

  renderQueue(state) {
    const sig = (r) => JSON.stringify([r.id, r.state, r.site_name, r.delegate, r.position]);
    const els = syncList($('queue'), state.queue, sig, (r) => {
      const passed = r.state === 'passed';
      return h('li', { class: passed ? 'request passed' : 'request', dataset: { request: r.id } },
        h('div', {},
          h('span', { class: 'who' }, r.delegate), r.position ? h('span', { class: 'pos' }, ` — ${r.position}`) : null,
          h('div', { class: 'from' }, r.site_name, ' · ', t('con_asked_at', { time: clock(r.at).time }))),
        h('div', { class: 'wait' }, h('span', { class: 'waited', title: t('con_waiting') }),
          h('br'), passed ? h('span', { class: 'badge passed' }, t('con_passed')) : null),
        h('div', { class: 'buttons' },
          passed ? null : h('button', { type: 'button', class: 'pass small-button', dataset: { command: 'pass' } }, t('con_pass')),
          h('span', { class: 'behalf' }, t('con_on_behalf')),
          h('button', { type: 'button', class: 'grant small-button', dataset: { command: 'grant' } }, t('con_grant')),
          h('button', { type: 'button', class: 'decline small-button danger-outline', dataset: { command: 'decline' } }, t('con_decline'))));
    });
    els.forEach((el, i) => { el.dataset.waiting = state.queue[i].waiting_s; });
    this.tick();
    $('queue-none').hidden = state.queue.length > 0;
    $('clear-requests').disabled = state.queue.length === 0;
  }

  /** Each request's waiting time goes on between two states. */
  tick() {
    const more = (performance.now() - this.received) / 1000;
    for (const li of $('queue').querySelectorAll('li[data-request]')) {
      setText(li.querySelector('.waited'), duration(Number(li.dataset.waiting) + more));
    }
  }

  renderRollCall(state) {
    const sites = state.sites.filter((s) => !s.control_center || state.roll_call[s.id]);
    const reports = sites.map((s) => state.roll_call[s.id]).filter(Boolean);
    const sig = (s) => JSON.stringify([s.id, s.name, state.roll_call[s.id] || null]);
    syncList($('roll-call'), sites, sig, (s) => {
      const r = state.roll_call[s.id];
      if (!r) return h('li', { dataset: { site: s.id } }, h('span', {}, s.name), ' ', h('span', { class: 'none' }, `— ${t('con_roll_none')}`));
      const person = (d) => h('li', {}, d.name, d.position ? ` (${d.position})` : '', d.reason ? `: ${d.reason}` : '');
      return h('li', { dataset: { site: s.id } },
        h('details', {},
          h('summary', {}, h('span', {}, s.name),
            h('span', { class: 'counts' }, t('con_roll_counts', { present: r.present.length, absent: r.absent.length }))),
          h('div', { class: 'hint' }, `${t('roll_reported')} ${clock(r.at).time}`),
          r.present.length ? [h('strong', {}, t('roll_present')), h('ul', { class: 'present' }, r.present.map(person))] : null,
          r.absent.length ? [h('strong', {}, t('roll_absent')), h('ul', { class: 'absent' }, r.absent.map(person))] : null));
    });
    const present = reports.reduce((n, r) => n + r.present.length, 0);
    setText($('roll-summary'), t('con_roll_summary', { reported: reports.length, sites: sites.length, present }));
  }
}
