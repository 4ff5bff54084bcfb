// A signature pad on a <canvas>: pointer events (mouse, touch and pen alike), strokes kept in
// a fixed logical area (width x height, the server's SIGNATURE_WIDTH/HEIGHT) whatever the
// canvas's on-screen size, exported as an SVG path of absolute M/L commands with integer
// coordinates — the only form POST /api/agreements/{id}/signatures accepts for a drawn
// signature.
export const MAX_POINTS = 2000;   // server: SIGNATURE_MAX_POINTS
export const MAX_STROKES = 60;    // server: SIGNATURE_MAX_STROKES
const MIN_STEP = 2;               // logical units between kept points (keeps paths short)

export class SignaturePad {
  constructor(canvas, { width = 600, height = 200, lineWidth = 3 } = {}) {
    this.canvas = canvas;
    this.width = width;
    this.height = height;
    this.lineWidth = lineWidth;
    this.strokes = [];
    this.current = null;
    this.pointerId = null;
    this.ctx = canvas.getContext('2d');
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
    canvas.addEventListener('pointercancel', (e) => this.up(e));
    canvas.addEventListener('lostpointercapture', (e) => this.up(e));
    if ('ResizeObserver' in window) new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  get points() { return this.strokes.reduce((n, s) => n + s.length, 0); }
  isEmpty() { return this.strokes.length === 0; }

  clear() {
    this.strokes = [];
    this.current = null;
    this.redraw();
    this.changed();
  }

  // The signature as an SVG path: "M x y L x y ... M x y L x y ...".
  toPath() {
    return this.strokes
      .map((s) => `M${s[0][0]} ${s[0][1]} ` + s.slice(1).map((p) => `L${p[0]} ${p[1]}`).join(' '))
      .join(' ');
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    const x = ((e.clientX - r.left) * this.width) / (r.width || 1);
    const y = ((e.clientY - r.top) * this.height) / (r.height || 1);
    return [Math.round(Math.min(this.width, Math.max(0, x))), Math.round(Math.min(this.height, Math.max(0, y)))];
  }

  down(e) {
    if (this.current || (e.pointerType === 'mouse' && e.button !== 0)) return;
    if (this.strokes.length >= MAX_STROKES || this.points >= MAX_POINTS - 2) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    this.pointerId = e.pointerId;
    this.current = [this.point(e)];
    this.strokes.push(this.current);
    this.redraw();
  }

  move(e) {
    if (!this.current || e.pointerId !== this.pointerId) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      if (this.points >= MAX_POINTS - 1) break;
      const p = this.point(ev);
      const last = this.current[this.current.length - 1];
      if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= MIN_STEP) this.current.push(p);
    }
    this.redraw();
  }

  up(e) {
    if (!this.current || e.pointerId !== this.pointerId) return;
    const last = this.point(e);
    const prev = this.current[this.current.length - 1];
    if (this.current.length === 1 || last[0] !== prev[0] || last[1] !== prev[1]) this.current.push(last);
    this.current = null;
    this.pointerId = null;
    this.redraw();
    this.changed();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * ratio));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.redraw();
  }

  redraw() {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(canvas.width / this.width, 0, 0, canvas.height / this.height, 0, 0);
    ctx.lineWidth = this.lineWidth;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.strokeStyle = '#111';
    for (const s of this.strokes) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      for (const p of s.slice(1)) ctx.lineTo(p[0], p[1]);
      if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
      ctx.stroke();
    }
  }

  changed() {
    this.canvas.dataset.strokes = String(this.strokes.length);
    this.canvas.dispatchEvent(new Event('change'));
  }
}
