// Small helpers shared by the console's modules: building elements, times as the regulation's
// province reads them (Asia/Ho_Chi_Minh, dd/mm, 24 hours), and the text of a refusal.
import { t, errorText } from './live.js';

export const $ = (id) => document.getElementById(id);

/** `<tag>` with properties (booleans and handlers as properties, the rest as attributes). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (typeof v === 'boolean') el[k] = v;
    else el.setAttribute(k, v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** Replaces an element's text only when it changes (the stats come every second). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

const CLOCK = new Intl.DateTimeFormat('en-GB', {
  timeZone: 'Asia/Ho_Chi_Minh', day: '2-digit', month: '2-digit', year: 'numeric',
  hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
});

/** A Unix time (seconds) or a date as the province reads it: `{day: 'dd/mm', date:
 * 'dd/mm/yyyy', time: 'HH:MM'}`. */
export function clock(when) {
  const d = typeof when === 'number' ? new Date(when * 1000) : new Date(when);
  const p = Object.fromEntries(CLOCK.formatToParts(d).map((x) => [x.type, x.value]));
  return { day: `${p.day}/${p.month}`, date: `${p.day}/${p.month}/${p.year}`, time: `${p.hour}:${p.minute}` };
}

/** A waiting time: `mm:ss`, or `h:mm:ss` from an hour. */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n) => String(n).padStart(2, '0');
  const hours = Math.floor(s / 3600);
  const rest = `${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return hours ? `${hours}:${rest}` : rest;
}

/** A refusal as the operator reads it: "Lỗi (quy tắc C4): …" with the server's Vietnamese text
 * (which cites the article), else the dictionary's. */
export function refusalText(msg) {
  const vi = document.documentElement.lang !== 'en' && msg.message_vi;
  const text = vi || (msg.code === 'internal' ? t('con_err_internal') : errorText(msg));
  const rule = msg.article ? ` (${t('con_rule', { rule: msg.article })})` : '';
  return `${t('error_prefix')}${rule}: ${text}`;
}

/** Makes `container`'s children the elements of `items`, in order, keeping the element of an
 * item whose `sig(item)` is unchanged: a state that comes every second (a lecture's rotation)
 * does not rebuild the button under the operator's pointer. */
export function syncList(container, items, sig, build) {
  const old = new Map([...container.children].map((el) => [el.dataset.sig, el]));
  const els = items.map((item) => {
    const s = sig(item);
    let el = old.get(s);
    if (el) old.delete(s);
    else {
      el = build(item);
      el.dataset.sig = s;
    }
    return el;
  });
  for (const el of old.values()) el.remove();
  els.forEach((el, i) => {
    if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
  });
  return els;
}
