// 调解协议书 page: sign for one signer with a drawn signature (the pad) or a typed name, then
// reload to show the signature rendered with the signer and the time.
import { t } from './i18n.js';
import { SignaturePad } from './signature-pad.js';

const form = document.getElementById('sign-form');
if (form) {
  const canvas = document.getElementById('sig-pad');
  const pad = new SignaturePad(canvas, { width: Number(form.dataset.width), height: Number(form.dataset.height) });
  const err = document.getElementById('sign-error');
  const signer = form.querySelector('#signer');
  const name = form.querySelector('#signer_name');
  const typed = form.querySelector('#typed_sig');
  const show = (msg) => { err.textContent = msg; err.hidden = !msg; };
  const method = () => form.querySelector('input[name=method]:checked').value;

  signer.addEventListener('change', () => {
    name.value = signer.selectedOptions[0].dataset.name || '';
    pad.clear();
    typed.value = '';
    show('');
  });
  for (const radio of form.querySelectorAll('input[name=method]')) {
    radio.addEventListener('change', () => {
      document.getElementById('drawn-area').hidden = method() !== 'drawn';
      document.getElementById('typed-area').hidden = method() !== 'typed';
      if (method() === 'drawn') pad.resize();
      show('');
    });
  }
  document.getElementById('sig-clear').addEventListener('click', () => { pad.clear(); show(''); });
  canvas.addEventListener('change', () => show(''));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const signerName = name.value.trim();
    if (!signerName) { show(t('sig.name')); name.focus(); return; }
    let data;
    if (method() === 'drawn') {
      if (pad.isEmpty()) { show(t('sig.empty')); return; }
      data = pad.toPath();
    } else {
      data = typed.value.trim();
      if (!data) { show(t('sig.typed')); typed.focus(); return; }
    }
    const button = document.getElementById('sign-submit');
    button.disabled = true;
    try {
      const r = await fetch(`/api/agreements/${form.dataset.agreement}/signatures`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content },
        body: JSON.stringify({ signer: signer.value, signer_name: signerName, method: method(), data }),
      });
      const out = await r.json().catch(() => ({}));
      if (!r.ok) {
        show((document.documentElement.lang === 'en' ? out.message : out.message_zh) || t('err.generic'));
        return;
      }
      location.reload();
    } catch {
      show(t('err.generic'));
    } finally {
      button.disabled = false;
    }
  });
}
