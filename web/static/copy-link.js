// Copy buttons next to read-only link fields (the join links staff hand over).
for (const button of document.querySelectorAll('[data-copy]')) {
  const input = document.getElementById(button.dataset.copy);
  if (!input) continue;
  input.addEventListener('focus', () => input.select());
  button.addEventListener('click', async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      document.execCommand('copy');
    }
  });
}
