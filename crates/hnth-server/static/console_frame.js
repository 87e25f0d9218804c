// The frame every screen shows (C1) and the meeting's technical parameters (P3): the layout
// picker, the fill (the floor's order, or sites placed by hand: dragged into a cell, or chosen
// and then a cell clicked), and a preview of every site's screen (`meeting_state.screen`) with
// the videos this console receives.
import { t } from './live.js';
import { $, h, setText, syncList } from './console_util.js';

// Where each cell of a layout sits on its grid, largest first as the server lists them:
// [column, row, columns spanned, rows spanned]. The MCU conventions: 1+5 a large cell on a 3×3
// grid, 1+7 on 4×4, 2+8 two medium on top of two rows of four, 1+12 a large centre.
const square = (n) => Array.from({ length: n * n }, (_, i) => [i % n + 1, Math.floor(i / n) + 1, 1, 1]);
const ONE_PLUS_7 = { cols: 4, rows: 4, cells: [[1, 1, 3, 3], [4, 1, 1, 1], [4, 2, 1, 1], [4, 3, 1, 1], [1, 4, 1, 1], [2, 4, 1, 1], [3, 4, 1, 1], [4, 4, 1, 1]] };
export const LAYOUTS = {
  '1x1': { cols: 1, rows: 1, cells: square(1) },
  '2x2': { cols: 2, rows: 2, cells: square(2) },
  '3x3': { cols: 3, rows: 3, cells: square(3) },
  '4x4': { cols: 4, rows: 4, cells: square(4) },
  '1+5': { cols: 3, rows: 3, cells: [[1, 1, 2, 2], [3, 1, 1, 1], [3, 2, 1, 1], [1, 3, 1, 1], [2, 3, 1, 1], [3, 3, 1, 1]] },
  '1+7': ONE_PLUS_7,
  '2+8': { cols: 4, rows: 4, cells: [[1, 1, 2, 2], [3, 1, 2, 2], ...square(4).slice(8)] },
  '1+12': { cols: 4, rows: 4, cells: [[2, 2, 2, 2], ...square(4).filter(([c, r]) => !(c > 1 && c < 4 && r > 1 && r < 4))] },
  speaker: ONE_PLUS_7,
  lecture: { cols: 1, rows: 1, cells: square(1) },
};
// The two layouts that fill themselves from the floor.
const AUTOMATIC = new Set(['speaker', 'lecture']);
const key = (layout) => layout.replace('+', 'p');

function place(el, [col, row, w, hgt]) {
  el.style.gridColumn = `${col} / span ${w}`;
  el.style.gridRow = `${row} / span ${hgt}`;
}

/** A grid of `n` cells for a screen whose layout this page does not know. */
function geometry(layout, n) {
  const g = LAYOUTS[layout];
  if (g && g.cells.length === n) return g;
  const side = Math.max(1, Math.ceil(Math.sqrt(n)));
  return { cols: side, rows: side, cells: square(side).slice(0, n) };
}

export class FramePanel {
  /** `command(cmd)` sends a command of the meeting's course; `streamOf(cell)` the MediaStream
   * this console has of a cell's site, if any. */
  constructor({ command, streamOf }) {
    this.command = command;
    this.streamOf = streamOf;
    this.state = null;
    this.selected = null; // a site chosen to be placed by a click on a cell
    this.preview = $('preview');
    this.palette = $('palette');
    const buttons = Object.keys(LAYOUTS).map((layout) => {
      const g = LAYOUTS[layout];
      const mini = h('span', { class: 'mini', 'aria-hidden': 'true' }, g.cells.map((c) => {
        const i = h('i');
        place(i, c);
        return i;
      }));
      mini.style.setProperty('--cols', g.cols);
      mini.style.setProperty('--rows', g.rows);
      return h('button', {
        type: 'button', dataset: { layout }, title: t(`con_layout_${key(layout)}`), 'aria-pressed': 'false',
        onclick: () => this.setLayout(layout),
      }, mini, h('span', {}, t(`con_layout_short_${key(layout)}`)));
    });
    $('layouts').replaceChildren(...buttons);
    for (const radio of document.querySelectorAll('input[name="fill"]')) {
      radio.addEventListener('change', () => {
        if (!this.state || !radio.checked) return;
        const layout = this.state.frame.layout;
        if (radio.value === 'manual') this.setCells(layout, this.currentCells());
        else this.command({ type: 'set_frame', frame: { layout, fill: { kind: 'floor_order' } } });
      });
    }
    this.dragAndDrop();
    $('params-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      this.command({
        type: 'set_params',
        params: { max_height: Number(f.get('max_height')), max_kbps: Number(f.get('max_kbps')), rotate_secs: Number(f.get('rotate_secs')) },
      });
    });
  }

  /** The sites on the screen now, cell by cell (what a manual frame starts from). */
  currentCells() {
    return (this.state ? this.state.screen.cells : []).map((c) => c.site ?? null);
  }

  setLayout(layout) {
    if (!this.state) return;
    const fill = this.state.frame.fill;
    if (AUTOMATIC.has(layout) || fill.kind !== 'manual') {
      this.command({ type: 'set_frame', frame: { layout, fill: { kind: 'floor_order' } } });
      return;
    }
    this.setCells(layout, fill.cells);
  }

  /** A frame placed by hand: `cells` largest first, cut or padded to the layout's cells. */
  setCells(layout, cells) {
    const n = LAYOUTS[layout].cells.length;
    const list = Array.from({ length: n }, (_, i) => cells[i] ?? null);
    // Trailing empty cells say nothing: the server fills the rest as empty.
    while (list.length && list[list.length - 1] === null) list.pop();
    this.command({ type: 'set_frame', frame: { layout, fill: { kind: 'manual', cells: list } } });
  }

  /** Puts `site` in cell `index` (a site already on screen swaps places with the cell's). */
  placeSite(site, index) {
    const layout = this.state.frame.layout;
    if (AUTOMATIC.has(layout)) return;
    const cells = this.state.frame.fill.kind === 'manual' ? [...this.state.frame.fill.cells] : this.currentCells();
    const n = LAYOUTS[layout].cells.length;
    while (cells.length < n) cells.push(null);
    const from = cells.indexOf(site);
    if (from >= 0) cells[from] = cells[index];
    cells[index] = site;
    this.selected = null;
    this.setCells(layout, cells);
  }

  removeSite(site) {
    if (!this.state || this.state.frame.fill.kind !== 'manual') return;
    this.setCells(this.state.frame.layout, this.state.frame.fill.cells.map((s) => (s === site ? null : s)));
  }

  dragAndDrop() {
    const site = (e) => Number(e.dataTransfer.getData('text/plain'));
    this.preview.addEventListener('dragover', (e) => {
      const cell = e.target.closest('.cell');
      if (!cell || !this.preview.classList.contains('manual-ok')) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'move';
      for (const c of this.preview.querySelectorAll('.cell.drop')) if (c !== cell) c.classList.remove('drop');
      cell.classList.add('drop');
    });
    this.preview.addEventListener('dragleave', (e) => {
      const cell = e.target.closest('.cell');
      if (cell && !cell.contains(e.relatedTarget)) cell.classList.remove('drop');
    });
    this.preview.addEventListener('drop', (e) => {
      const cell = e.target.closest('.cell');
      if (!cell) return;
      e.preventDefault();
      cell.classList.remove('drop');
      if (site(e)) this.placeSite(site(e), Number(cell.dataset.index));
    });
    this.preview.addEventListener('click', (e) => {
      const clear = e.target.closest('button.clear');
      const cell = e.target.closest('.cell');
      if (clear && cell) this.removeSite(Number(cell.dataset.site));
      else if (cell && this.selected) this.placeSite(this.selected, Number(cell.dataset.index));
    });
    // A site dragged out of its cell and dropped on the list leaves the screen.
    this.palette.addEventListener('dragover', (e) => { e.preventDefault(); this.palette.classList.add('drop'); });
    this.palette.addEventListener('dragleave', () => this.palette.classList.remove('drop'));
    this.palette.addEventListener('drop', (e) => {
      e.preventDefault();
      this.palette.classList.remove('drop');
      if (e.dataTransfer.getData('application/x-hnth-cell')) this.removeSite(site(e));
    });
    this.palette.addEventListener('click', (e) => {
      const chip = e.target.closest('.chip');
      if (!chip) return;
      const id = Number(chip.dataset.site);
      this.selected = this.selected === id ? null : id;
      this.renderPalette();
    });
    const start = (e) => {
      const from = e.target.closest('[data-site]');
      if (!from || !from.draggable) return;
      e.dataTransfer.setData('text/plain', from.dataset.site);
      if (from.classList.contains('cell')) e.dataTransfer.setData('application/x-hnth-cell', '1');
      e.dataTransfer.effectAllowed = 'move';
    };
    this.palette.addEventListener('dragstart', start);
    this.preview.addEventListener('dragstart', start);
  }

  render(state) {
    this.state = state;
    const { layout, fill } = state.frame;
    for (const b of $('layouts').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.layout === layout));
    const automatic = AUTOMATIC.has(layout);
    for (const radio of document.querySelectorAll('input[name="fill"]')) {
      radio.checked = radio.value === (automatic ? 'floor_order' : fill.kind);
      radio.disabled = automatic && radio.value === 'manual';
    }
    setText($('frame-layout-name'), `— ${t(`con_layout_${key(layout)}`)}`);
    const hint = $('palette-hint');
    setText(hint, automatic ? t('con_fill_auto_only') : t('con_drag_hint'));
    const note = $('preview-note');
    note.hidden = layout !== 'lecture';
    setText(note, t('con_lecture_note', { secs: state.params.rotate_secs }));
    this.renderPreview();
    this.renderPalette();
    this.renderParams(state.params);
  }

  /** The sites that may be placed: every connected site of the meeting. */
  renderPalette() {
    const state = this.state;
    if (!state) return;
    const manual = !AUTOMATIC.has(state.frame.layout);
    const shown = new Set(state.screen.cells.map((c) => c.site).filter((s) => s !== null));
    if (this.selected && !state.sites.some((s) => s.id === this.selected && s.connected)) this.selected = null;
    const chips = state.sites.filter((s) => s.connected);
    const sig = (s) => JSON.stringify([s.id, s.name, shown.has(s.id), this.selected === s.id, manual]);
    syncList(this.palette, chips, sig, (s) => {
      const cls = ['chip', shown.has(s.id) ? 'placed' : '', this.selected === s.id ? 'selected' : '', manual ? '' : 'off'];
      return h('span', {
        class: cls.filter(Boolean).join(' '), draggable: manual, dataset: { site: s.id },
        title: shown.has(s.id) ? t('con_chip_on_screen') : t('con_chip_off_screen'),
      }, s.name);
    });
  }

  renderPreview() {
    const state = this.state;
    const { cells, layout } = state.screen;
    const g = geometry(layout, cells.length);
    const manual = !AUTOMATIC.has(state.frame.layout);
    this.preview.style.setProperty('--cols', g.cols);
    this.preview.style.setProperty('--rows', g.rows);
    this.preview.classList.toggle('manual-ok', manual);
    this.preview.classList.toggle('manual', manual && state.frame.fill.kind === 'manual');
    this.preview.dataset.layout = layout;
    const els = [...this.preview.children];
    while (els.length > cells.length) els.pop().remove();
    cells.forEach((c, i) => {
      let el = els[i];
      if (!el) {
        el = h('div', { class: 'cell' }, h('video', { muted: true, autoplay: true, playsInline: true }), h('span', { class: 'label' }));
        this.preview.append(el);
      }
      place(el, g.cells[i]);
      el.dataset.index = i;
      el.className = `cell ${c.size}${c.site === null ? ' empty' : ''}${state.floor.includes(c.site) ? ' floor' : ''}`;
      if (c.site === null) delete el.dataset.site;
      else el.dataset.site = c.site;
      el.draggable = manual && c.site !== null;
      setText(el.querySelector('.label'), c.site === null ? t('con_cell_empty') : c.name);
      let clear = el.querySelector('button.clear');
      const clearable = manual && state.frame.fill.kind === 'manual' && c.site !== null;
      if (clearable && !clear) {
        clear = h('button', { type: 'button', class: 'clear', title: t('con_cell_clear'), 'aria-label': t('con_cell_clear') }, '×');
        el.append(clear);
      } else if (!clearable && clear) clear.remove();
    });
    this.attachStreams();
  }

  /** Each cell shows the video this console receives of its site (the same MediaStream as the
   * monitor's tile: no second download). Called again whenever streams come and go. */
  attachStreams() {
    if (!this.state) return;
    const cells = this.state.screen.cells;
    [...this.preview.children].forEach((el, i) => {
      const video = el.querySelector('video');
      const stream = cells[i] ? this.streamOf(cells[i]) : null;
      if (video.srcObject !== stream) {
        video.srcObject = stream;
        if (stream) video.play().catch(() => {});
      }
      video.hidden = !stream;
    });
  }

  renderParams(params) {
    const form = $('params-form');
    // The operator's unsaved input is kept while the form is being edited.
    if (form.contains(document.activeElement)) return;
    form.elements.max_height.value = String(params.max_height);
    form.elements.max_kbps.value = String(params.max_kbps);
    form.elements.rotate_secs.value = String(params.rotate_secs);
  }
}
