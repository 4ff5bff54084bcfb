// The reception desk's live queue: polls /api/queue every 2 s (a plain JSON endpoint keeps the
// desk working through proxies that drop WebSockets) and redraws the table.
import { t } from './i18n.js';

const tbody = document.querySelector('#queue tbody');
const tpl = document.getElementById('row-tpl');
const empty = document.getElementById('queue-empty');
const updated = document.getElementById('queue-updated');
const fmt = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

function render(data) {
  const focused = document.activeElement && document.activeElement.closest('tr[data-entry]');
  const keep = focused && focused.dataset.entry;
  tbody.innerHTML = '';
  for (const e of data.waiting) {
    const row = tpl.content.firstElementChild.cloneNode(true);
    row.dataset.entry = e.id;
    row.classList.toggle('flagged', e.flagged);
    row.querySelector('.c-site').textContent = e.site_name;
    row.querySelector('.c-matter').textContent = e.matter_name;
    row.querySelector('.c-name').textContent = e.resident_name;
    row.querySelector('.c-agent').textContent = e.agent_present ? t('desk.agent') : t('desk.noagent');
    const w = row.querySelector('.wait');
    w.textContent = fmt(e.waited_s);
    if (e.flagged) { const tag = document.createElement('span'); tag.className = 'tag warn'; tag.textContent = t('desk.long'); w.append(' ', tag); }
    row.querySelector('form').action = `/desk/calls/${e.id}/accept`;
    tbody.append(row);
    if (keep === String(e.id)) row.querySelector('button').focus();
  }
  empty.hidden = data.waiting.length > 0;
  updated.textContent = new Date().toLocaleTimeString('zh-CN', { timeZone: document.documentElement.dataset.tz || undefined });
}

async function poll() {
  try {
    const r = await fetch('/api/queue', { headers: { Accept: 'application/json' } });
    if (r.ok) render(await r.json());
    updated.classList.toggle('error', !r.ok);
  } catch { updated.classList.add('error'); }
  setTimeout(poll, 2000);
}
poll();
