// ESLint for the browser client (web/static, plain ES modules, no build step) and its Node
// unit tests (tests/js). `make jslint` runs it; `npm ci` installs the pinned versions.
import js from '@eslint/js';
import globals from 'globals';

// Rules past eslint:recommended, each for a class of real bug rather than style.
const bugRules = {
  'array-callback-return': 'error', // .map/.filter callback that forgets to return
  eqeqeq: ['error', 'smart'], // == only against null
  'no-promise-executor-return': 'error',
  'no-self-compare': 'error',
  'no-template-curly-in-string': 'error', // '${x}' meant as a template literal
  'no-unmodified-loop-condition': 'error',
  'no-unreachable-loop': 'error',
  'no-use-before-define': ['error', { functions: false, classes: true, variables: false }],
  'no-shadow': ['error', { builtinGlobals: false }],
  'no-implicit-globals': 'error',
  'no-var': 'error',
  'no-empty': ['error', { allowEmptyCatch: true }],
  'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
  'consistent-return': 'error',
};

export default [
  { ignores: ['node_modules/**', '.venv/**', 'artifacts/**', 'bench/**'] },
  js.configs.recommended,
  {
    files: ['web/static/**/*.js'],
    ignores: ['web/static/room-model.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser } },
    rules: bugRules,
  },
  {
    // The room model is UI-free: no browser globals at all, so any DOM access fails `no-undef`.
    files: ['web/static/room-model.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: { ...globals.es2021, EventTarget: 'readonly', CustomEvent: 'readonly' },
    },
    rules: bugRules,
  },
  {
    files: ['tests/js/**/*.js', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.node } },
    rules: bugRules,
  },
];
