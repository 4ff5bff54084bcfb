// Synchronised playback of one session's recordings: every <video>/<audio> track starts at its
// wall-clock offset from the earliest track (t=0). One master clock drives them all: play, pause
// and seek act on the clock, and each element follows at (clock - its offset), re-seeked only
// when it drifts too far. The clock holds while a track that should be playing has no data to
// play yet (still loading, or re-buffering after a seek): the others pause with it, so a slow
// file never falls behind or misses its part (#player[data-state] is paused|buffering|playing).
const player = document.getElementById('player');
if (player) {
  const tracks = [...player.querySelectorAll('.track')].map((el) => ({
    el,
    offset: Number(el.dataset.offset) || 0,
    duration: Number(el.dataset.duration) || 0,
  }));
  const total = Number(player.dataset.total) || 0;
  const button = document.getElementById('play-toggle');
  const seek = document.getElementById('seek');
  const clock = document.getElementById('clock');
  const MAX_DRIFT_S = 0.25;
  const HAVE_FUTURE_DATA = 3;
  let position = 0; // seconds on the session timeline: while paused, and the last shown time
  let startedAt = null; // performance.now() minus position, while playing
  let seeking = false;

  const now = () => (startedAt === null ? position : (performance.now() - startedAt) / 1000);
  const fmt = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

  function follow(t, playing) {
    for (const tr of tracks) {
      const local = t - tr.offset;
      const inside = local >= 0 && local < (tr.duration || Infinity);
      if (!inside) {
        if (!tr.el.paused) tr.el.pause();
        if (local < 0 && tr.el.currentTime !== 0) tr.el.currentTime = 0;
        continue;
      }
      if (Math.abs(tr.el.currentTime - local) > MAX_DRIFT_S) tr.el.currentTime = local;
      if (playing && tr.el.paused) tr.el.play().catch(() => {});
      if (!playing && !tr.el.paused) tr.el.pause();
    }
  }

  // A track inside its part of the timeline that cannot play on yet. A track that failed to
  // load or has ended never holds the others.
  const starved = (t) => tracks.some((tr) => {
    const local = t - tr.offset;
    return local >= 0 && local < (tr.duration || Infinity) && !tr.el.error && !tr.el.ended
      && tr.el.readyState < HAVE_FUTURE_DATA;
  });

  function render(t) {
    if (!seeking) seek.value = String(t);
    const note = player.dataset.state === 'buffering' ? ` · ${clock.dataset.buffering}` : '';
    clock.textContent = `${fmt(t)} / ${fmt(total)}${note}`;
  }

  function tick() {
    if (startedAt === null) return;
    const t = now();
    if (t >= total) {
      pause();
      position = total;
    } else if (starved(position)) {
      startedAt = performance.now() - position * 1000; // the clock stands still
      player.dataset.state = 'buffering';
      follow(position, false);
    } else {
      position = t;
      player.dataset.state = 'playing';
      follow(t, true);
    }
    render(position);
    if (startedAt !== null) requestAnimationFrame(tick);
  }

  function play() {
    if (position >= total) position = 0;
    startedAt = performance.now() - position * 1000;
    button.textContent = button.dataset.pause;
    requestAnimationFrame(tick);
  }

  function pause() {
    position = now();
    startedAt = null;
    player.dataset.state = 'paused';
    button.textContent = button.dataset.play;
    follow(position, false);
    render(position);
  }

  function seekTo(t) {
    const playing = startedAt !== null;
    position = Math.min(Math.max(t, 0), total);
    if (playing) startedAt = performance.now() - position * 1000;
    for (const tr of tracks) {
      const local = position - tr.offset;
      tr.el.currentTime = Math.min(Math.max(local, 0), tr.duration || Math.max(local, 0));
    }
    follow(position, playing);
    render(position);
  }

  button.addEventListener('click', () => (startedAt === null ? play() : pause()));
  seek.addEventListener('input', () => { seeking = true; clock.textContent = `${fmt(Number(seek.value))} / ${fmt(total)}`; });
  seek.addEventListener('change', () => { seeking = false; seekTo(Number(seek.value)); });
  // The page renders the controls disabled: a click or seek before this module ran would be lost.
  button.disabled = false;
  seek.disabled = false;
  render(0);
}
