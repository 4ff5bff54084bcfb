// The 笔录 editor (web/templates/sessions/minutes.html): paragraphs stamped with the session
// clock when begun, autosaved (the whole text, with the version it was based on) a moment after
// the clerk stops typing. Without this script the page is a plain form that saves on submit.
const form = document.getElementById('minutes-form');
const list = document.getElementById('paragraphs');
const state = document.getElementById('autosave-state');
const msg = form.dataset;
const loadedAt = Date.now();
const clockAtLoad = Number(form.dataset.clock) || 0;
const csrf = document.querySelector('meta[name=csrf-token]').content;
let timer = null;
let saving = false;
let again = false;
let stopped = false;

function sessionClock() { return clockAtLoad + Math.floor((Date.now() - loadedAt) / 1000); }

function stamp(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
}

function setVersion(v) {
  document.querySelectorAll('input[name=version]').forEach((i) => { i.value = String(v); });
}

function paragraphs() {
  return [...list.querySelectorAll('li')].map((li) => ({
    at_s: Number(li.querySelector('input[name=at_s]').value),
    text: li.querySelector('textarea').value,
  }));
}

function addParagraph() {
  const at = sessionClock();
  const n = list.children.length + 1;
  const li = document.createElement('li');
  li.className = 'minutes-paragraph';
  const span = document.createElement('span');
  span.className = 'stamp';
  span.setAttribute('aria-hidden', 'true');
  span.textContent = stamp(at);
  const hidden = document.createElement('input');
  hidden.type = 'hidden'; hidden.name = 'at_s'; hidden.value = String(at);
  const label = document.createElement('label');
  label.className = 'sr-only';
  label.htmlFor = `p-${n}`;
  label.textContent = msg.msgLabel.replace('{n}', String(n)).replace('{stamp}', stamp(at));
  const area = document.createElement('textarea');
  area.id = `p-${n}`; area.name = 'text'; area.rows = 3; area.maxLength = 4000;
  li.append(span, hidden, label, area);
  list.append(li);
  area.focus();
  return area;
}

async function save() {
  if (stopped) return;
  if (saving) { again = true; return; }
  saving = true;
  state.textContent = msg.msgSaving;
  try {
    const r = await fetch(form.action, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ version: Number(form.querySelector('input[name=version]').value), paragraphs: paragraphs() }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      setVersion(body.version);
      // the district's clock (the page's data-tz), not the browser's
      const tz = document.documentElement.dataset.tz || 'Asia/Shanghai';
      state.textContent = `${msg.msgSaved} ${new Date().toLocaleTimeString('zh-CN', { hour12: false, timeZone: tz })}`;
      form.dataset.saved = String(body.version);
      const status = document.querySelector('#minutes-status .tag');
      if (status) status.textContent = msg.msgWriting;
    } else {
      state.textContent = body.message_zh || msg.msgFailed;
      if (r.status === 409) stopped = true; // saved elsewhere or frozen: reload to continue
    }
  } catch {
    state.textContent = msg.msgFailed;
  } finally {
    saving = false;
    if (again) { again = false; save(); }
  }
}

/** Resolves once no save is in flight (a freeze must carry the newest version). */
function idle() {
  return new Promise((resolve) => {
    const check = () => { if (saving) setTimeout(check, 100); else resolve(); };
    check();
  });
}

function later() {
  clearTimeout(timer);
  timer = setTimeout(save, 1500);
}

// With the script: paragraphs are added with a button, each stamped when begun.
form.querySelector('.new-paragraph').hidden = true;
const add = document.getElementById('minutes-add');
add.hidden = false;
add.addEventListener('click', () => { addParagraph(); });
if (!list.children.length) addParagraph();
form.addEventListener('input', later);
form.addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(timer); save(); });
const freeze = document.getElementById('freeze-form');
if (freeze) {
  freeze.addEventListener('submit', async (e) => {
    const button = freeze.querySelector('button');
    if (!window.confirm(button.dataset.confirm)) { e.preventDefault(); return; }
    e.preventDefault();
    clearTimeout(timer);
    await idle();
    await save();
    freeze.submit();
  });
}
