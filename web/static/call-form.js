// The community call form: prejoin check beside the resident's details.
import { mountPrejoin } from './prejoin.js';

const pj = mountPrejoin(document.getElementById('prejoin'));
// The preview is released before leaving, so the call page can open the same camera.
document.getElementById('call-form').addEventListener('submit', () => pj.stop());
