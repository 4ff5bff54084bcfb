// Create a mediation session (POST /api/sessions with the CSRF header), then enter its room.
import { t } from './i18n.js';

const form = document.getElementById('new-session');
if (form) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = form.querySelector('.field-error');
    const title = form.title.value.trim();
    if (!title) { err.textContent = t('form.title'); err.hidden = false; form.title.focus(); return; }
    const body = { kind: 'mediation', title, recording_allowed: form.recording_allowed.checked };
    const caseNo = form.case_no.value.trim();
    if (caseNo) body.case_no = caseNo;
    const r = await fetch('/api/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content }, body: JSON.stringify(body) });
    const out = await r.json().catch(() => ({}));
    if (!r.ok) { err.textContent = out.message_zh || t('err.generic'); err.hidden = false; return; }
    location.href = `/rooms/${out.room_id}`;
  });
}
