// The staff mediation room page: the room, and the host's invitation by link and QR.
import { mountRoom } from './room.js';
import { t } from './i18n.js';

const root = document.getElementById('room');
if (root) mountRoom(root);
const form = document.getElementById('invite-form');
if (form) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = form.querySelector('.field-error');
    const name = form.display_name.value.trim();
    if (!name) { err.textContent = t('form.name'); err.hidden = false; form.display_name.focus(); return; }
    err.hidden = true;
    const r = await fetch(`/api/sessions/${form.dataset.session}/tokens`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content },
      body: JSON.stringify({ display_name: name, role: form.role.value }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { err.textContent = body.message_zh || t('err.generic'); err.hidden = false; return; }
    const out = document.querySelector('.invite-result');
    const a = out.querySelector('.invite-link');
    a.href = body.url; a.textContent = location.origin + body.url;
    out.querySelector('.invite-qr').src = body.qr_url;
    out.hidden = false;
  });
}
