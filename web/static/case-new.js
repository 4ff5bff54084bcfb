// The window intake form (/cases/new): show only the chosen matter type's particulars.
// Without JavaScript the server shows them after the first submit.
const select = document.getElementById('i-matter');
if (select) {
  const show = () => {
    for (const box of document.querySelectorAll('.matter-fields')) {
      box.hidden = box.dataset.matter !== select.value;
    }
  };
  select.addEventListener('change', show);
  show();
}
