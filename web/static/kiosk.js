// Kiosk mode: no way out (no links, no context menu, no text selection drag), and after a
// period without touches the page returns to an empty registration form.
const resetAfter = Number(document.body.dataset.resetAfter || 120) * 1000;
let timer;
function home() {
  const site = document.querySelector('input[name=site]')?.value || document.body.dataset.site || '';
  location.replace(`/kiosk${site ? `?site=${encodeURIComponent(site)}` : ''}`);
}
function arm() { clearTimeout(timer); timer = setTimeout(home, resetAfter); }
for (const ev of ['pointerdown', 'keydown', 'input', 'touchstart']) document.addEventListener(ev, arm, { passive: true });
arm();
document.addEventListener('contextmenu', (e) => e.preventDefault());
// Links other than the kiosk's own pages never navigate away.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (a && !a.pathname.startsWith('/kiosk')) e.preventDefault();
});
window.addEventListener('keydown', (e) => {
  if ((e.altKey && e.key === 'ArrowLeft') || e.key === 'F5' || (e.ctrlKey && ['l', 'n', 't', 'w'].includes(e.key.toLowerCase()))) e.preventDefault();
});
history.pushState(null, '', location.href);
window.addEventListener('popstate', () => history.pushState(null, '', location.href));
const first = document.querySelector('.field-error');
if (first) { const field = first.closest('fieldset, label')?.querySelector('input:not([type=hidden]), textarea'); if (field) field.focus(); }
