// The community point's call page: the agent and resident wait in the reception room while
// the centre's queue shows the call; the status polls until an officer accepts.
import { mountRoom } from './room.js';
import { t } from './i18n.js';

const box = document.getElementById('call-status');
const entry = box.dataset.entry;
mountRoom(document.getElementById('room'));

function fmt(s) { return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }

async function poll() {
  try {
    const r = await fetch(`/api/queue/calls/${entry}`, { headers: { Accept: 'application/json' } });
    if (r.ok) {
      const e = await r.json();
      box.dataset.state = e.state;
      document.getElementById('call-state').textContent = e.state_label;
      document.getElementById('call-wait').textContent = fmt(e.waited_s);
      const acc = document.getElementById('call-accepted');
      if (e.state === 'accepted') { acc.hidden = false; acc.textContent = t('call.accepted', { name: e.accepted_by_name }); }
      document.getElementById('callback-box').hidden = !(e.state === 'waiting' && e.callback_offered) && !document.querySelector('#callback-box .field-error');
      document.getElementById('callback-done').hidden = e.state !== 'callback';
      // The threshold (ONEDOOR_QUEUE_CALLBACK_AFTER_S) is in the page; the server decides.
      document.getElementById('callback-hint').hidden = e.state !== 'waiting' || e.callback_offered;
      document.getElementById('cancel-form').hidden = e.state !== 'waiting';
      // Ended: the page itself shows the case number, the next step and the follow QR code.
      if (e.state === 'ended') { window.location.reload(); return; }
      if (e.state === 'cancelled') return;
    }
  } catch { /* offline: the room banner shows the reconnect state; keep polling */ }
  setTimeout(poll, 2000);
}
poll();
