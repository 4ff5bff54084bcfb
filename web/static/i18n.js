// Client-side strings: the page renders them (zh-CN msgids through gettext) into
// <script type="application/json" id="js-i18n">; t('key', {var}) looks them up.
let table = null;
function load() {
  if (table) return table;
  const el = document.getElementById('js-i18n');
  try { table = el ? JSON.parse(el.textContent) : {}; } catch { table = {}; }
  return table;
}
export function t(key, vars = {}) {
  let s = load()[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
