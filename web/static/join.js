// The resident's join page: prejoin check, then the room (lobby first).
import { mountPrejoin } from './prejoin.js';
import { mountRoom } from './room.js';

const btn = document.getElementById('join-btn');
const pj = mountPrejoin(document.getElementById('prejoin'), { onReady: (s) => { btn.disabled = !s; } });
btn.addEventListener('click', () => {
  const stream = pj.take();
  document.getElementById('join-step').hidden = true;
  mountRoom(document.getElementById('room'), stream);
});
