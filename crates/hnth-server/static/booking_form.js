// The registration form (Art. 5): a calendar for the dd/mm/yyyy date fields, and a preparation
// time (P2, Art. 6.1c) that follows the official start unless the user set it by hand.
// Without this script the form still works: the server reads dd/mm/yyyy and hh:mm, and puts an
// empty preparation at its default before the start.

const form = document.querySelector('form.booking-form');
const pad = (n) => String(n).padStart(2, '0');

/** `dd/mm/yyyy` (or `d/m/yyyy`) as `yyyy-mm-dd`, or '' if it is no date. */
function toIso(text) {
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(text.trim());
  if (!m) return '';
  const [d, mo, y] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCDate() !== d || date.getUTCMonth() !== mo - 1) return '';
  return `${y}-${pad(mo)}-${pad(d)}`;
}

function fromIso(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  return m ? `${m[3]}/${m[2]}/${m[1]}` : '';
}

// The calendar: the browser's own date picker (hidden input), whose choice is written into the
// text field the Vietnamese way.
for (const button of form.querySelectorAll('button.calendar-button')) {
  const name = button.dataset.for;
  const text = form.elements[name];
  const picker = form.querySelector(`input.calendar-input[data-for="${name}"]`);
  if (!text || !picker) continue;
  button.hidden = false;
  button.addEventListener('click', () => {
    picker.value = toIso(text.value);
    try {
      picker.showPicker();
    } catch {
      picker.focus();
      picker.click();
    }
  });
  picker.addEventListener('change', () => {
    if (!picker.value) return;
    text.value = fromIso(picker.value);
    text.dispatchEvent(new Event('input', { bubbles: true }));
    text.focus();
  });
}

// The preparation follows the start, keeping its lead over it: the default lead on a new form,
// the stored one when editing. Once the user types a preparation time it stays (`prep_manual`
// keeps that across a round trip to the server); emptied, it follows again.
const times = form.querySelector('.times');
const { start, prep, prep_manual: manual } = form.elements;
const DEFAULT_LEAD = Number(times.dataset.prepMinutes) || 30;

/** Minutes since midnight of a 24-hour `hh:mm`, or null. */
function minutes(text) {
  const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(text.trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) : null;
}

const hhmm = (mins) => `${pad(Math.floor(mins / 60))}:${pad(mins % 60)}`;

function initialLead() {
  const s = minutes(start.value);
  const p = minutes(prep.value);
  return s !== null && p !== null && p <= s ? s - p : DEFAULT_LEAD;
}

let lead = initialLead();

function follow() {
  if (manual.value === '1') return;
  const s = minutes(start.value);
  if (s === null) return;
  prep.value = hhmm(Math.max(0, s - lead));
}

function setByHand() {
  if (prep.value.trim() === '') {
    manual.value = '';
    lead = DEFAULT_LEAD;
  } else {
    manual.value = '1';
  }
}

start.addEventListener('input', follow);
start.addEventListener('change', follow);
prep.addEventListener('input', setByHand);
prep.addEventListener('change', setByHand);
