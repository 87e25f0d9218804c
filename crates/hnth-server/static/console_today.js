// Today's meetings (B4): the approved bookings whose meeting may be opened now, each with its
// preparation and official times, chair and sites, opened from here; and the emergency meeting
// (B5), opened at once and registered as an emergency booking in the same step.
import { t } from './live.js';
import { $, h, clock } from './console_util.js';

export class Today {
  /** `open(booking)`, `follow(meeting)` and `emergency({title, chair, sites})` act on the
   * operator's choice; `error(text)` tells what is missing. */
  constructor({ open, follow, emergency, error }) {
    this.list = $('bookings');
    this.sitesBox = $('em-sites');
    this.onOpen = open;
    this.onFollow = follow;
    this.error = error;
    // Until the operator ticks a box, the emergency calls every site online (they can answer now).
    this.ticked = false;
    this.sitesBox.addEventListener('change', () => { this.ticked = true; });
    $('em-open').addEventListener('click', () => {
      const title = $('em-title').value.trim();
      if (!title) {
        this.error(t('con_em_no_title'));
        $('em-title').focus();
        return;
      }
      const sites = [...this.sitesBox.querySelectorAll('input:checked')].map((i) => Number(i.value));
      const chair = $('em-chair').value.trim();
      if (!confirm(t('con_em_confirm', { title, n: sites.length }))) return;
      emergency({ title, chair, sites });
    });
  }

  /** After an emergency was opened, the form is ready for the next one. */
  resetEmergency() {
    $('em-title').value = '';
    $('em-chair').value = '';
    this.ticked = false;
  }

  /** `bookings` from the server; `current` the meeting this console follows. */
  renderBookings(list, current) {
    this.list.replaceChildren(...list.map((b) => this.item(b, current)));
    $('bookings-none').hidden = list.length > 0;
    const due = list.filter((b) => b.due && !b.meeting).length;
    const live = list.filter((b) => b.meeting).length;
    const parts = [t('con_today_count', { n: list.length })];
    if (due) parts.push(t('con_today_due', { n: due }));
    if (live) parts.push(t('con_today_live', { n: live }));
    $('today-summary').textContent = parts.join(' · ');
  }

  item(b, current) {
    const prep = clock(b.preparation_start);
    const start = clock(b.official_start);
    const end = clock(b.official_end);
    const names = b.site_names || [];
    const cls = ['booking', b.meeting ? 'live' : b.due ? 'due' : '', b.emergency ? 'emergency' : ''];
    let go;
    if (b.meeting) {
      go = [h('span', { class: 'badge live' }, t('con_live'))];
      if (b.meeting !== current) {
        go.push(h('button', { type: 'button', class: 'follow secondary small-button', onclick: () => this.onFollow(b.meeting) }, t('con_follow')));
      }
    } else {
      go = [
        b.due ? h('span', { class: 'badge due' }, t('con_due')) : null,
        h('button', { type: 'button', class: b.due ? 'open-booking due' : 'open-booking secondary', onclick: () => this.onOpen(b) }, t('open_meeting')),
      ];
    }
    return h('li', { class: cls.filter(Boolean).join(' '), dataset: { booking: b.id } },
      h('div', { class: 'times' },
        h('span', { class: 'prep' }, `${t('con_prep')} ${prep.time}`), h('br'),
        h('strong', { class: 'official' }, `${start.time}–${end.time}`), ' ',
        h('span', { class: 'day' }, start.day)),
      h('div', { class: 'what' },
        h('div', { class: 'title' }, b.kind_label ? `${b.kind_label}: ` : '', b.title, ' ',
          b.emergency ? h('span', { class: 'badge emergency' }, t('con_kind_emergency')) : null),
        h('div', { class: 'meta' },
          b.chair ? `${t('con_chair')}: ${b.chair} · ` : '', `${t('con_host')}: ${b.host_site_name} · `,
          h('a', { href: `/bookings/${b.id}` }, t('con_booking_link', { id: b.id }))),
        h('div', { class: 'site-list', title: names.join(', ') },
          `${t('con_sites_n', { n: names.length })}: ${names.join(', ')}`)),
      h('div', { class: 'go' }, go));
  }

  /** The sites an emergency may call (the registry's, the control center apart). */
  renderSites(sites) {
    const box = this.sitesBox;
    for (const s of sites) {
      let input = box.querySelector(`input[value="${s.id}"]`);
      if (!input) {
        input = h('input', { type: 'checkbox', name: 'em-site', value: String(s.id) });
        box.append(h('label', { title: s.name }, input, ' ', s.name));
      }
      const online = s.presence !== 'offline';
      input.closest('label').classList.toggle('offline', !online);
      if (!this.ticked) input.checked = s.presence === 'idle';
    }
  }
}
