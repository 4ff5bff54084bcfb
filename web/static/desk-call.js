// The reception page: the room beside the intake form; ending the reception ends the video
// session for everybody, then records the outcome.
import { mountRoom } from './room.js';

const ui = mountRoom(document.getElementById('room'));
document.getElementById('end-form').addEventListener('submit', async (e) => {
  const form = e.target;
  if (!form.outcome.value || ui.status !== 'joined' || form.dataset.ending) return;
  e.preventDefault();
  form.dataset.ending = '1';
  try { await ui.model.endSession(3000); } catch { /* still record the outcome */ }
  form.submit();
});
