// Unit tests of the browser client's room model (web/static/room-model.js): no DOM, no
// socket. A FakeSignal stands in for signaling.js's Signaling: the test plays the server's
// onedoor.v1 messages (docs/signaling.md) into it and reads what the client sent back.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import {
  JITTER_HOLD_MS, MAX_VIDEO_BITRATE, RoomModel, START_RAMP_MS, START_VIDEO_BITRATE, cameraBitrate,
  jitterTarget, linkQuality, parseTrackId, peerOfTrackId, shownQuality,
} from '../../web/static/room-model.js';

/** What signaling.js's Signaling offers the model: 'state'/'message' events, send, request, leave. */
class FakeSignal extends EventTarget {
  constructor() {
    super();
    this.sent = [];
    /** type → the error the server answers that request with */
    this.errors = new Map();
  }

  server(msg) { this.dispatchEvent(new CustomEvent('message', { detail: msg })); }

  state(detail) { this.dispatchEvent(new CustomEvent('state', { detail })); }

  request(msg) {
    this.sent.push(msg);
    const error = this.errors.get(msg.type);
    if (error) return Promise.reject(Object.assign(new Error(error.message_zh), error));
    return Promise.resolve({ type: 'ack' });
  }

  send(msg) { return this.request(msg).catch(() => {}); }

  async leave() {
    this.sent.push({ type: 'leave' });
    this.state({ state: 'closed', attempt: 0, reason: 'left' });
  }
}

const EVENTS = ['status', 'connection', 'self', 'participants', 'lobby', 'room', 'recording', 'chat',
  'consent_prompt', 'consent', 'media', 'track', 'track_removed', 'forced_mute', 'unmute_request',
  'notice', 'video_paused', 'audio_only', 'publish_limit'];

function setUp() {
  const signal = new FakeSignal();
  const model = new RoomModel(signal);
  const events = [];
  for (const type of EVENTS) model.addEventListener(type, (e) => events.push([type, e.detail]));
  const seen = (type) => events.filter(([t]) => t === type).map(([, d]) => d);
  return { signal, model, events, seen };
}

const ROOM = { room_id: 'r-7Hq2xk', kind: 'mediation', title: '邻里纠纷调解', capacity: 8, locked: false,
  recording: false, recording_allowed: true, paused: false };
const HOST = { peer_id: 'p-Xa81', display_name: '王调解员', role: 'mediator', is_staff: true, site_id: 1,
  site_name: '区信访超市', connected: true };
const ZHANG = { peer_id: 'p-3kLm9a', display_name: '张三', role: 'party', is_staff: false, site_id: 57,
  site_name: '文晖街道朝晖九区社区', muted_audio: false, forced_audio: false, connected: true };
const LI = { peer_id: 'p-Li44', display_name: '李四', role: 'party', is_staff: false, connected: true };
const HOST_PERMS = ['admit', 'audio', 'chat', 'moderate', 'record', 'screen', 'video'];

function hostWelcome(extra = {}) {
  return { type: 'welcome', peer_id: HOST.peer_id, status: 'joined', role: 'mediator', permissions: HOST_PERMS,
    room: ROOM, ice_servers: [], resume_token: 't1', participants: [HOST], lobby: [], resumed: false,
    media_reset: false, ...extra };
}

function residentWelcome(extra = {}) {
  return { type: 'welcome', peer_id: ZHANG.peer_id, status: 'lobby', role: 'party',
    permissions: ['audio', 'chat', 'video'], room: { room_id: ROOM.room_id, kind: 'mediation', capacity: 8 },
    ice_servers: [], resume_token: 't2', participants: [], lobby: [], resumed: false, media_reset: false, ...extra };
}

const track = (id, kind, readyState = 'live') => ({ id, kind, readyState });

describe('join and leave', () => {
  test('a staff join goes straight into the room and asks for a media connection', () => {
    const { signal, model, events } = setUp();
    signal.state({ state: 'connecting', attempt: 0 });
    signal.state({ state: 'joined', attempt: 0, reconnected: false, resumed: false });
    signal.server(hostWelcome({ ice_servers: [{ urls: ['turn:turn.example:3478'] }] }));

    assert.equal(model.status, 'joined');
    assert.equal(model.me, HOST.peer_id);
    assert.equal(model.role, 'mediator');
    assert.ok(model.can('admit') && model.can('moderate') && model.can('record'));
    assert.ok(!model.can('nonsense'));
    assert.deepEqual(model.iceServers, [{ urls: ['turn:turn.example:3478'] }]);
    assert.deepEqual([...model.participants.keys()], [HOST.peer_id]);
    assert.equal(model.connection.state, 'joined');
    // The page renders who it is before the roster, and starts media once joined.
    assert.deepEqual(events.map(([t]) => t),
      ['connection', 'connection', 'self', 'room', 'recording', 'participants', 'lobby', 'status', 'media']);
    assert.deepEqual(events.at(-1), ['media', { action: 'start' }]);
  });

  test('others join, change and leave; the roster follows', () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome());
    signal.server({ type: 'participant_joined', participant: ZHANG });
    signal.server({ type: 'participant_joined', participant: LI });
    assert.deepEqual([...model.participants.keys()], [HOST.peer_id, ZHANG.peer_id, LI.peer_id]);

    signal.server({ type: 'participant_update', participant: { ...ZHANG, speaking: true, quality: 'fair' } });
    assert.equal(model.participant(ZHANG.peer_id).speaking, true);
    assert.equal(model.participant(ZHANG.peer_id).quality, 'fair');

    signal.server({ type: 'participant_left', peer_id: ZHANG.peer_id, reason: 'left' });
    assert.deepEqual([...model.participants.keys()], [HOST.peer_id, LI.peer_id]);
    const last = seen('participants').at(-1).participants.map((p) => p.peer_id);
    assert.deepEqual(last, [HOST.peer_id, LI.peer_id]);
  });

  test('leaving ends the room as "left", and nothing after it changes the state', async () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome());
    await model.leave();
    assert.deepEqual(signal.sent.at(-1), { type: 'leave' });
    assert.equal(model.status, 'ended');
    assert.deepEqual(model.final, { code: 'left', message_zh: null });
    assert.equal(seen('status').filter((s) => s.status === 'ended').length, 1);
    assert.deepEqual(seen('media').at(-1), { action: 'stop' });

    signal.server({ type: 'participant_joined', participant: ZHANG });
    assert.ok(!model.participants.has(ZHANG.peer_id));
  });

  test('a refused join (error to the join, then closed) ends with the server’s code and text', () => {
    const { signal, model } = setUp();
    signal.state({ state: 'connecting', attempt: 0 });
    signal.state({ state: 'closed', attempt: 0, reason: 'room_full', message_zh: '房间已满' });
    model.failed('room_full', '房间已满'); // connect() rejects after the state change
    assert.equal(model.status, 'ended');
    assert.deepEqual(model.final, { code: 'room_full', message_zh: '房间已满' });
  });

  test('a socket closed for good by a close code ends with that code', () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome());
    signal.state({ state: 'closed', attempt: 0, reason: 4409 });
    assert.deepEqual(model.final, { code: '4409', message_zh: null });
  });

  test('removed and session_ended end the room; the socket closing afterwards does not change why', () => {
    for (const [type, code] of [['removed', 'removed'], ['session_ended', 'ended']]) {
      const { signal, model } = setUp();
      signal.server(hostWelcome());
      signal.server({ type, reason: '', by: HOST.peer_id });
      signal.state({ state: 'closed', attempt: 0, reason: 4404 });
      assert.equal(model.status, 'ended');
      assert.equal(model.final.code, code);
      assert.equal(model.connection.state, 'closed');
    }
  });
});

describe('lobby', () => {
  test('a resident waits in the lobby, without media, until admitted', () => {
    const { signal, model, seen } = setUp();
    signal.server(residentWelcome());
    assert.equal(model.status, 'lobby');
    assert.equal(model.paused, false);
    assert.deepEqual(seen('media'), []);

    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't3' });
    assert.equal(model.status, 'joined');
    assert.deepEqual([...model.participants.keys()], [HOST.peer_id, ZHANG.peer_id]);
    assert.deepEqual(seen('media'), [{ action: 'start' }]);
  });

  test('the host sees who waits and admits one, denies another', async () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome({ lobby: [{ peer_id: LI.peer_id, display_name: '李四', role: 'party',
      waiting_since: '2026-11-24T08:00:00Z' }] }));
    assert.deepEqual(model.lobby.map((w) => w.peer_id), [LI.peer_id]);
    const waiting = [
      { peer_id: ZHANG.peer_id, display_name: '张三', role: 'party', site_name: '文晖街道朝晖九区社区',
        waiting_since: '2026-11-24T08:00:00Z' },
      { peer_id: LI.peer_id, display_name: '李四', role: 'party', waiting_since: '2026-11-24T08:01:00Z' },
    ];
    signal.server({ type: 'lobby_update', waiting });
    assert.deepEqual(seen('lobby').at(-1).waiting.map((w) => w.display_name), ['张三', '李四']);

    await model.admit(ZHANG.peer_id);
    await model.deny(LI.peer_id);
    assert.deepEqual(signal.sent, [{ type: 'admit', peer_id: ZHANG.peer_id }, { type: 'deny', peer_id: LI.peer_id }]);

    signal.server({ type: 'participant_joined', participant: ZHANG });
    signal.server({ type: 'lobby_update', waiting: [] });
    assert.deepEqual(model.lobby, []);
    assert.ok(model.participants.has(ZHANG.peer_id));
  });

  test('a denied resident’s room ends as "denied"', () => {
    const { signal, model, seen } = setUp();
    signal.server(residentWelcome());
    signal.server({ type: 'denied', reason: '请到三号调解室' });
    signal.state({ state: 'closed', attempt: 0, reason: 4403 });
    assert.equal(model.status, 'ended');
    assert.deepEqual(model.final, { code: 'denied', message_zh: null });
    assert.deepEqual(seen('status').at(-1), { status: 'ended', paused: false, final: model.final });
  });

  test('paused sends the resident back to the lobby and drops media; re-admission restarts it', () => {
    const { signal, model, seen } = setUp();
    signal.server(residentWelcome());
    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't3' });
    model.trackReceived(track(`${HOST.peer_id}.video.0a1b2c3d`, 'video'));

    signal.server({ type: 'paused', reason: 'no_official' });
    assert.equal(model.status, 'lobby');
    assert.equal(model.paused, true);
    assert.equal(model.tracksOf(HOST.peer_id), null);
    assert.deepEqual(seen('track_removed'), [{ peerId: HOST.peer_id, slot: 'all' }]);
    assert.deepEqual(seen('media').at(-1), { action: 'stop' });
    assert.deepEqual(seen('status').at(-1), { status: 'lobby', paused: true, final: null });

    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't4' });
    assert.equal(model.status, 'joined');
    assert.equal(model.paused, false);
    assert.deepEqual(seen('media').at(-1), { action: 'start' });
  });
});

describe('recording consent', () => {
  test('a consent request prompts; the answer is sent once and clears the prompt', async () => {
    const { signal, model, seen } = setUp();
    signal.server(residentWelcome());
    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't3' });
    signal.server({ type: 'consent_request', by: HOST.peer_id });
    assert.deepEqual(model.consentPrompt, { by: HOST.peer_id });
    assert.deepEqual(seen('consent_prompt'), [{ prompt: { by: HOST.peer_id } }]);

    await model.answerConsent(false);
    assert.deepEqual(signal.sent, [{ type: 'recording_consent', consent: false }]);
    assert.equal(model.consentPrompt, null);
    assert.equal(model.myConsent, false);
    assert.deepEqual(seen('consent_prompt').at(-1), { prompt: null });
  });

  test('the host asks, follows the answers, and starts recording once all consented', async () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome({ participants: [HOST, ZHANG] }));
    await model.requestConsent();
    assert.deepEqual(signal.sent.at(-1), { type: 'request_consent' });

    signal.server({ type: 'consent_request', by: HOST.peer_id }); // the host is asked too
    await model.answerConsent(true);
    signal.server({ type: 'consent_state', consented: [HOST.peer_id], refused: [], pending: [ZHANG.peer_id],
      minutes_required: false });
    assert.deepEqual(model.consent, { consented: [HOST.peer_id], refused: [], pending: [ZHANG.peer_id],
      minutesRequired: false });

    signal.errors.set('recording_start', { code: 'consent_missing', message_zh: '尚有人未同意录制' });
    await assert.rejects(model.startRecording(), { code: 'consent_missing' });
    assert.equal(model.recording, false);

    signal.server({ type: 'consent_state', consented: [HOST.peer_id, ZHANG.peer_id], refused: [], pending: [] });
    signal.errors.delete('recording_start');
    await model.startRecording();
    signal.server({ type: 'recording_state', active: true, by: HOST.peer_id, reason: '' });
    assert.equal(model.recording, true);
    assert.equal(model.room.recording, true);
    assert.deepEqual(seen('recording').at(-1), { active: true });

    await model.stopRecording();
    signal.server({ type: 'recording_state', active: false, by: HOST.peer_id, reason: '' });
    assert.equal(model.recording, false);
    assert.deepEqual(signal.sent.slice(-2), [{ type: 'recording_start' }, { type: 'recording_stop' }]);
  });

  test('a refusal means minutes are required', () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome());
    signal.server({ type: 'consent_state', consented: [HOST.peer_id], refused: [ZHANG.peer_id], pending: [],
      minutes_required: true });
    assert.equal(model.consent.minutesRequired, true);
    assert.deepEqual(model.consent.refused, [ZHANG.peer_id]);
  });
});

describe('tracks', () => {
  test('track ids name the publishing participant', () => {
    assert.deepEqual(parseTrackId('p-3kLm9a.video.0a1b2c3d'), { peerId: 'p-3kLm9a', kind: 'video', tag: '0a1b2c3d' });
    assert.equal(parseTrackId('0f3c-uuid-without-dots'), null);
    assert.equal(parseTrackId('a..b'), null);
    assert.equal(parseTrackId('a.b.c.d'), null);
    assert.equal(peerOfTrackId('p-3kLm9a.audio.ffee0011'), 'p-3kLm9a');
    assert.equal(peerOfTrackId('no-dots'), 'no-dots');
  });

  test('each received track goes to its participant; a second live video is the screen share', () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome({ participants: [HOST, ZHANG, LI] }));
    const audio = track(`${ZHANG.peer_id}.audio.00000001`, 'audio');
    const camera = track(`${ZHANG.peer_id}.video.00000002`, 'video');
    const screen = track(`${ZHANG.peer_id}.video.00000003`, 'video');
    const liCamera = track(`${LI.peer_id}.video.00000004`, 'video');

    assert.equal(model.trackReceived(audio).slot, 'camera');
    assert.equal(model.trackReceived(camera).slot, 'camera');
    const placed = model.trackReceived(screen);
    assert.equal(placed.slot, 'screen');
    assert.equal(placed.participant.display_name, '张三');
    assert.equal(model.trackReceived(liCamera).participant.display_name, '李四');
    assert.deepEqual(model.tracksOf(ZHANG.peer_id), { audio, video: camera, screen });
    assert.equal(model.participantOfTrack(liCamera.id).peer_id, LI.peer_id);
    assert.deepEqual(seen('track').map((d) => [d.peerId, d.kind, d.slot]), [
      [ZHANG.peer_id, 'audio', 'camera'], [ZHANG.peer_id, 'video', 'camera'],
      [ZHANG.peer_id, 'video', 'screen'], [LI.peer_id, 'video', 'camera']]);

    model.trackEnded(screen);
    assert.equal(model.tracksOf(ZHANG.peer_id).screen, null);
    assert.deepEqual(seen('track_removed'), [{ peerId: ZHANG.peer_id, slot: 'screen' }]);
    model.trackEnded(screen); // ended and muted both fire: the second changes nothing
    assert.equal(seen('track_removed').length, 1);

    signal.server({ type: 'participant_left', peer_id: LI.peer_id, reason: 'left' });
    assert.equal(model.tracksOf(LI.peer_id), null);
    assert.deepEqual(seen('track_removed').at(-1), { peerId: LI.peer_id, slot: 'all' });
  });

  test('a new camera track replaces an ended one instead of becoming a screen share', () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome({ participants: [HOST, ZHANG] }));
    const old = track(`${ZHANG.peer_id}.video.00000001`, 'video');
    model.trackReceived(old);
    old.readyState = 'ended'; // the old media connection closed
    const fresh = track(`${ZHANG.peer_id}.video.00000002`, 'video');
    assert.equal(model.trackReceived(fresh).slot, 'camera');
    assert.equal(model.tracksOf(ZHANG.peer_id).video, fresh);
    // The same track again (renegotiation) stays the camera.
    assert.equal(model.trackReceived(fresh).slot, 'camera');
  });

  test('a track can arrive before its participant’s roster entry', () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome());
    const placed = model.trackReceived(track(`${LI.peer_id}.audio.00000001`, 'audio'));
    assert.equal(placed.peerId, LI.peer_id);
    assert.equal(placed.participant, undefined);
  });
});

describe('resume', () => {
  test('a resume that kept the media connection keeps it, and the tracks', () => {
    const { signal, model, seen } = setUp();
    signal.state({ state: 'joined', attempt: 0 });
    signal.server(hostWelcome({ participants: [HOST, ZHANG] }));
    const camera = track(`${ZHANG.peer_id}.video.00000001`, 'video');
    model.trackReceived(camera);

    signal.server({ type: 'participant_update', participant: { ...ZHANG, connected: false } });
    signal.state({ state: 'reconnecting', attempt: 1 });
    assert.deepEqual(model.connection, { state: 'reconnecting', attempt: 1, reconnected: false });
    assert.equal(model.status, 'joined'); // not ended: the place is kept for the grace period

    signal.state({ state: 'joined', attempt: 0, reconnected: true, resumed: true });
    signal.server(hostWelcome({ participants: [HOST, { ...ZHANG, connected: true }], resumed: true }));
    assert.deepEqual(model.connection, { state: 'joined', attempt: 0, reconnected: true });
    assert.equal(model.status, 'joined');
    assert.equal(model.me, HOST.peer_id);
    assert.equal(model.participant(ZHANG.peer_id).connected, true);
    assert.equal(model.tracksOf(ZHANG.peer_id).video, camera);
    assert.deepEqual(seen('media'), [{ action: 'start' }, { action: 'keep' }]);
  });

  test('a resume whose media connection is gone (media_reset) starts a new one', () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome());
    signal.server(hostWelcome({ resumed: true, media_reset: true, room: { ...ROOM, locked: true } }));
    assert.deepEqual(seen('media'), [{ action: 'start' }, { action: 'start' }]);
    assert.equal(model.room.locked, true);
  });

  test('media_failed from the server rebuilds the media connection at once, only when joined', () => {
    const { signal, seen } = setUp();
    signal.server(residentWelcome());
    signal.server({ type: 'error', code: 'media_failed', message: 'ice', message_zh: '音视频连接中断，正在重连' });
    assert.deepEqual(seen('media'), [], 'in the lobby there is no media connection to rebuild');
    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't3' });
    signal.server({ type: 'error', re: '4', code: 'media_failed', message: 'x' });
    assert.deepEqual(seen('media'), [{ action: 'start' }], 'an answer to a request is not news');
    signal.server({ type: 'error', code: 'media_failed', message: 'ice', message_zh: '音视频连接中断，正在重连' });
    assert.deepEqual(seen('media'), [{ action: 'start' }, { action: 'start' }]);
    assert.equal(seen('notice').at(-1).code, 'media_failed');
  });

  test('a resident resumed while paused stays paused in the lobby', () => {
    const { signal, model } = setUp();
    signal.server(residentWelcome());
    signal.server({ type: 'admitted', participants: [HOST, ZHANG], resume_token: 't3' });
    signal.server({ type: 'paused', reason: 'no_official' });
    signal.server(residentWelcome({ resumed: true }));
    assert.equal(model.status, 'lobby');
    assert.equal(model.paused, true);
    signal.server(residentWelcome({ status: 'joined', participants: [HOST, ZHANG], resumed: true }));
    assert.equal(model.status, 'joined');
    assert.equal(model.paused, false);
  });
});

describe('host controls and messages', () => {
  test('force mute toggles on the participant’s current state; lock on the room’s', async () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome({ participants: [HOST, ZHANG] }));
    await model.toggleForceMute(ZHANG.peer_id);
    signal.server({ type: 'participant_update', participant: { ...ZHANG, forced_audio: true } });
    await model.toggleForceMute(ZHANG.peer_id);
    await model.toggleLock();
    signal.server({ type: 'room_update', room: { ...ROOM, locked: true } });
    await model.toggleLock();
    await model.remove(ZHANG.peer_id);
    await model.endSession();
    assert.deepEqual(signal.sent, [
      { type: 'force_mute', peer_id: ZHANG.peer_id, kind: 'audio', muted: true },
      { type: 'force_mute', peer_id: ZHANG.peer_id, kind: 'audio', muted: false },
      { type: 'lock', locked: true },
      { type: 'lock', locked: false },
      { type: 'remove', peer_id: ZHANG.peer_id },
      { type: 'end_session' },
    ]);
  });

  test('chat, presence, mutes and server notices reach the page', async () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome({ participants: [HOST, ZHANG] }));
    await model.sendChat('各位好');
    await model.setPresence({ muted_audio: true });
    assert.deepEqual(signal.sent, [{ type: 'chat', text: '各位好' }, { type: 'presence', muted_audio: true }]);

    signal.server({ type: 'chat_message', from_peer: HOST.peer_id, display_name: '王调解员', text: '各位好', at: '2026-11-24T08:01:00Z' });
    signal.server({ type: 'chat_message', from_peer: ZHANG.peer_id, display_name: '张三', text: '能听到', at: '2026-11-24T08:01:05Z' });
    assert.deepEqual(seen('chat').map((c) => [c.message.text, c.mine]), [['各位好', true], ['能听到', false]]);
    assert.equal(model.chat.length, 2);

    signal.server({ type: 'forced_mute', kind: 'audio', muted: true, by: HOST.peer_id });
    signal.server({ type: 'unmute_request', kind: 'audio', by: HOST.peer_id });
    assert.deepEqual(seen('forced_mute'), [{ kind: 'audio', muted: true, by: HOST.peer_id }]);
    assert.deepEqual(seen('unmute_request'), [{ kind: 'audio', by: HOST.peer_id }]);

    // An answer to a request of ours is the requester's business; one on its own is news.
    signal.server({ type: 'error', re: '6', code: 'rate_limited', message: 'slow down', message_zh: '操作过于频繁' });
    signal.server({ type: 'error', code: 'media_failed', message: 'media failed', message_zh: '媒体连接失败' });
    assert.deepEqual(seen('notice'), [{ code: 'media_failed', message_zh: '媒体连接失败' }]);
  });
});

describe('audio first', () => {
  test('video paused for a weak link follows the server, per sender, and clears with a new connection', () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome());
    signal.server({ type: 'participant_joined', participant: ZHANG });
    signal.server({ type: 'participant_joined', participant: LI });
    signal.server({ type: 'video_paused', peers: [ZHANG.peer_id, LI.peer_id] });
    assert.deepEqual(seen('video_paused').at(-1).peers, [ZHANG.peer_id, LI.peer_id]);
    signal.server({ type: 'video_resumed', peers: [ZHANG.peer_id] });
    assert.deepEqual(seen('video_paused').at(-1).peers, [LI.peer_id]);
    assert.deepEqual([...model.videoPaused], [LI.peer_id]);
    signal.server({ type: 'participant_left', peer_id: LI.peer_id, reason: 'left' });
    assert.deepEqual(seen('video_paused').at(-1).peers, []);
    signal.server({ type: 'video_paused', peers: [ZHANG.peer_id] });
    signal.server(hostWelcome({ resumed: true, media_reset: true })); // a new media connection
    assert.deepEqual(seen('video_paused').at(-1).peers, []);
  });

  test('a publish limit reaches the media connection as kbit/s, and null lifts it', () => {
    const { signal, seen } = setUp();
    signal.server(hostWelcome());
    signal.server({ type: 'publish_limit', max_kbps: 240 });
    signal.server({ type: 'publish_limit', max_kbps: null });
    assert.deepEqual(seen('publish_limit'), [{ maxKbps: 240 }, { maxKbps: null }]);
  });

  test('audio only asks the server for no video, and again for every new media connection', () => {
    const { signal, model, seen } = setUp();
    signal.server(hostWelcome());
    model.setAudioOnly(true);
    assert.deepEqual(signal.sent.at(-1), { type: 'receive_video', enabled: false });
    assert.deepEqual(seen('audio_only'), [{ on: true }]);
    signal.sent.length = 0;
    signal.server(hostWelcome({ resumed: true, media_reset: true }));
    assert.deepEqual(signal.sent, [{ type: 'receive_video', enabled: false }]);
    model.setAudioOnly(false);
    assert.deepEqual(signal.sent.at(-1), { type: 'receive_video', enabled: true });
    signal.sent.length = 0;
    signal.server(hostWelcome({ resumed: true, media_reset: true }));
    assert.deepEqual(signal.sent, []);
  });
});

describe('jitterTarget (how long a received video is held)', () => {
  const calm = { now: 100_000, lossyUntil: 0, frozeUntil: 0, rttMs: 140 };
  test('a clean link keeps the browser default', () => assert.equal(jitterTarget(calm), null));
  test('a stream that froze lately waits a retransmission round trip, upstream ones too', () => {
    assert.equal(jitterTarget({ ...calm, frozeUntil: calm.now + JITTER_HOLD_MS }), 300);
    assert.equal(jitterTarget({ ...calm, frozeUntil: calm.now + 1, rttMs: 250 }), 400);
  });
  test('our own lossy link holds every stream, within 150-400 ms', () => {
    assert.equal(jitterTarget({ ...calm, lossyUntil: calm.now + 1, rttMs: 20 }), 150);
    assert.equal(jitterTarget({ ...calm, lossyUntil: calm.now + 1, rttMs: 900 }), 400);
    assert.equal(jitterTarget({ ...calm, lossyUntil: calm.now + 1, rttMs: null }), 230);
  });
  test('the hold ends', () => assert.equal(jitterTarget({ ...calm, frozeUntil: calm.now }), null));
});

describe('linkQuality (one getStats sample)', () => {
  const ok = { state: 'connected', lossPct: 0, rttMs: 40, stalledMs: 0, receiving: true };
  test('a clean connected link is good', () => assert.equal(linkQuality(ok), 'good'));
  test('loss and round trips make it fair, then poor', () => {
    assert.equal(linkQuality({ ...ok, lossPct: 3 }), 'fair');
    assert.equal(linkQuality({ ...ok, rttMs: 300 }), 'fair');
    assert.equal(linkQuality({ ...ok, lossPct: 9 }), 'poor');
    assert.equal(linkQuality({ ...ok, rttMs: 700 }), 'poor');
  });
  test('nothing arriving for 1.5 s while "connected" is a lost link, not a good one', () => {
    assert.equal(linkQuality({ ...ok, stalledMs: 1000 }), 'good');
    assert.equal(linkQuality({ ...ok, stalledMs: 1500 }), 'lost');
    assert.equal(linkQuality({ ...ok, stalledMs: 5000, receiving: false }), 'good'); // alone in the room
  });
  test('ICE states decide first', () => {
    assert.equal(linkQuality({ ...ok, state: 'disconnected' }), 'lost');
    assert.equal(linkQuality({ ...ok, state: 'failed' }), 'lost');
    assert.equal(linkQuality({ ...ok, state: 'new' }), 'unknown');
  });
});

describe('shownQuality (a tile: the sender\'s own link and what the server receives from it)', () => {
  test('the worse of quality and upstream', () => {
    assert.equal(shownQuality({ quality: 'good', upstream: 'poor' }), 'poor');
    assert.equal(shownQuality({ quality: 'fair', upstream: 'good' }), 'fair');
    assert.equal(shownQuality({ quality: 'good', upstream: 'lost' }), 'lost');
    assert.equal(shownQuality({ quality: 'unknown', upstream: 'fair' }), 'fair');
    assert.equal(shownQuality({}), 'unknown');
  });
  test('a participant_update carrying the server\'s upstream grade changes that sender\'s tile', () => {
    const { signal, model } = setUp();
    signal.server(hostWelcome({ participants: [HOST, { ...ZHANG, quality: 'good' }] }));
    assert.equal(shownQuality(model.participant(ZHANG.peer_id)), 'good');
    signal.server({ type: 'participant_update', participant: { ...ZHANG, quality: 'good', upstream: 'lost' } });
    assert.equal(shownQuality(model.participant(ZHANG.peer_id)), 'lost');
    signal.server({ type: 'participant_update', participant: { ...ZHANG, quality: 'good', upstream: 'poor' } });
    assert.equal(shownQuality(model.participant(ZHANG.peer_id)), 'poor');
  });
});

describe('cameraBitrate', () => {
  test('starts low on every new connection, then our cap', () => {
    assert.equal(cameraBitrate(null, null), MAX_VIDEO_BITRATE); // the first frame: not capped
    assert.equal(cameraBitrate(100_000, null), 100_000);
    assert.equal(cameraBitrate(null, 0), START_VIDEO_BITRATE);
    assert.equal(cameraBitrate(null, START_RAMP_MS - 1), START_VIDEO_BITRATE);
    assert.equal(cameraBitrate(null, START_RAMP_MS), MAX_VIDEO_BITRATE);
    assert.equal(cameraBitrate(null, Infinity), MAX_VIDEO_BITRATE); // the ramp's timer ended it
  });
  test("the server's publish limit lowers it, never raises it", () => {
    assert.equal(cameraBitrate(200_000, START_RAMP_MS), 200_000);
    assert.equal(cameraBitrate(100_000, 0), 100_000);
    assert.equal(cameraBitrate(2_000_000, START_RAMP_MS), MAX_VIDEO_BITRATE);
  });
});
