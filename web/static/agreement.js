// 调解协议书 page: sign for one signer with a drawn signature (the pad) or a typed name, then
// reload to show the signature rendered with the signer, the time and how it was given. A party
// signing on the mediator's device must be identified first (身份证核验 with the ID number's
// last four characters, 人脸核验 or 当面核对); the mediator's own signature needs none.
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
  const ident = document.getElementById('identification');
  const last4Area = document.getElementById('id-last4-area');
  const last4 = document.getElementById('id_last4');
  const idMethod = () => form.querySelector('input[name=identification]:checked')?.value || '';
  const isParty = () => signer.value.startsWith('party:');
  const syncIdent = () => {
    ident.hidden = !isParty();
    last4Area.hidden = !isParty() || idMethod() !== 'id_card';
  };
  for (const radio of form.querySelectorAll('input[name=identification]')) {
    radio.addEventListener('change', () => { syncIdent(); show(''); });
  }
  const choose = (key) => {
    signer.value = key;
    name.value = signer.selectedOptions[0].dataset.name || '';
    pad.clear();
    typed.value = '';
    last4.value = '';
    for (const radio of form.querySelectorAll('input[name=identification]')) radio.checked = false;
    syncIdent();
    show('');
  };
  signer.addEventListener('change', () => choose(signer.value));
  // 在调解员设备上签署 on a party's card: that party in the form below.
  for (const link of document.querySelectorAll('a.sign-here')) {
    link.addEventListener('click', () => choose(link.dataset.signer));
  }
  syncIdent();
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
    const extra = {};
    if (isParty()) {
      if (!idMethod()) { show(t('sig.ident')); return; }
      extra.identification = idMethod();
      if (idMethod() === 'id_card') {
        const v = last4.value.trim().toUpperCase();
        if (!/^\d{3}[\dX]$/.test(v)) { show(t('sig.last4')); last4.focus(); return; }
        extra.id_last4 = v;
      }
    }
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
        body: JSON.stringify({ signer: signer.value, signer_name: signerName, method: method(), data, ...extra }),
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
