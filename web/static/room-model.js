// The room's state without any UI, as LiveKit's client SDK keeps `Room` apart from what draws
// it: who is in the room and who waits in the lobby, recording consent, which received track
// belongs to which participant, the connection state and the room's own status. It applies the
// server's onedoor.v1 messages (docs/signaling.md) and emits change events; room.js subscribes
// and renders. No DOM here: ESLint gives this file no browser globals, and node --test drives
// it with plain messages (tests/js/room-model.test.js).
//
// Events (CustomEvent; detail as noted, the same values are readable on the model):
//   status          {status, paused, final}  'new' | 'lobby' | 'joined' | 'ended';
//                   final = {code, message_zh} once ended
//   connection      {state, attempt, reconnected}  the socket: 'connecting' | 'joined' |
//                   'reconnecting' | 'closed'
//   self            {peerId, role, permissions}   from each welcome
//   participants    {participants}   the roster changed
//   lobby           {waiting}
//   room            {room}           lock, recording, recording allowed
//   recording       {active}
//   chat            {message, mine}
//   consent_prompt  {prompt}   a host asks for recording consent ({by}); null once answered
//   consent         {consented, refused, pending, minutesRequired}   (hosts only)
//   media           {action}   'start' (a fresh connection and offer), 'keep' (a resume kept
//                   it), 'stop'
//   track           {peerId, kind, slot, track, participant}   slot: 'camera' | 'screen'
//   track_removed   {peerId, slot}   slot: 'camera' | 'screen' | 'all'
//   forced_mute     {kind, muted, by}
//   video_paused    {peers}   the senders whose video the server paused for this client's
//                   weak link (audio goes on): every one of them, after each change
//   publish_limit   {maxKbps}  cap our camera's bitrate (null: no cap) for a weak receiver
//   audio_only      {on}      this client's own "仅音频" choice
//   unmute_request  {kind, by}
//   notice          {code, message_zh}   an error the server sent on its own (no `re`)

/**
 * @typedef {{peer_id: string, display_name: string, role: string, is_staff?: boolean,
 *   site_id?: number|null, site_name?: string|null, muted_audio?: boolean,
 *   muted_video?: boolean, forced_audio?: boolean, forced_video?: boolean, speaking?: boolean,
 *   quality?: string, upstream?: string, connected?: boolean}} Participant
 * @typedef {{peer_id: string, display_name: string, role: string, site_name?: string|null,
 *   waiting_since: string}} Waiting
 * @typedef {{room_id?: string, kind?: string, title?: string, capacity?: number,
 *   locked?: boolean, recording?: boolean, recording_allowed?: boolean, paused?: boolean}} RoomInfo
 * @typedef {{id: string, kind: string, readyState?: string}} TrackLike  a MediaStreamTrack
 * @typedef {{audio: TrackLike|null, video: TrackLike|null, screen: TrackLike|null}} PeerTracks
 * @typedef {{send(msg: object): Promise<unknown>, request(msg: object, timeoutMs?: number):
 *   Promise<any>, leave(): Promise<void>}} SignalClient  what signaling.js's Signaling offers
 */

/** Messages that end the room for this client, and the final code each one leaves. */
const FINAL_MESSAGES = { denied: 'denied', removed: 'removed', session_ended: 'ended' };

/**
 * Split a forwarded track id, `<peer_id>.<kind>.<hex>` (media/sfu.py), into its parts.
 * @param {string} id
 * @returns {{peerId: string, kind: string, tag: string} | null}  null when not of that form
 */
export function parseTrackId(id) {
  const parts = String(id).split('.');
  if (parts.length !== 3 || parts.some((p) => !p)) return null;
  const [peerId, kind, tag] = parts;
  return { peerId, kind, tag };
}

/**
 * The participant a received track belongs to: the peer id its id starts with. An id not of
 * the SFU's form counts as its own first dot-separated part, as the client always did.
 * @param {string} id
 */
export function peerOfTrackId(id) {
  const parsed = parseTrackId(id);
  return parsed ? parsed.peerId : String(id).split('.')[0];
}

/**
 * One's own link quality from one getStats() sample (media.js samples every second).
 * `stalledMs`: how long no RTP packet has arrived on any inbound stream while the connection
 * still says "connected" (a link that went down is only noticed by ICE after several seconds;
 * with Opus DTX a live link still brings a few packets a second, so 1.5 s of nothing is down).
 * @param {{state: string, lossPct: number, rttMs: number|null, stalledMs: number,
 *          receiving: boolean}} s
 * @returns {'good'|'fair'|'poor'|'lost'|'unknown'}
 */
export function linkQuality(s) {
  if (s.state === 'failed' || s.state === 'disconnected') return 'lost';
  if (s.state !== 'connected') return 'unknown';
  if (s.receiving && s.stalledMs >= 1500) return 'lost';
  const rtt = s.rttMs ?? 0;
  if (s.lossPct > 8 || rtt > 600) return 'poor';
  if (s.lossPct > 2 || rtt > 250) return 'fair';
  return 'good';
}

/** How long a stream stays buffered after its link last lost or froze (ms). */
export const JITTER_HOLD_MS = 20000;
/** The least a stream that froze lately is held (ms): it was repaired somewhere on its way,
 * maybe upstream of the server on the sender's link, whose round trip we do not know; this
 * covers a 4G round trip and a retransmission. */
export const FROZE_TARGET_MS = 300;

/**
 * How long a received video stream is held before it is played
 * (`RTCRtpReceiver.jitterBufferTarget`, ms), or null for the browser's own choice. A stream
 * that froze lately, or any stream while our own link loses packets, is given time for one
 * retransmission round trip (NACK/RTX) and a little jitter, so a repaired loss is a delay of a
 * few hundred milliseconds, not a freeze; a clean link keeps the browser's low delay.
 * @param {{now: number, lossyUntil: number, frozeUntil: number, rttMs: number|null}} s
 * @returns {number|null}
 */
export function jitterTarget(s) {
  const lossy = s.now < s.lossyUntil;
  const froze = s.now < s.frozeUntil;
  if (!lossy && !froze) return null;
  const own = Math.round(Math.min(400, Math.max(150, (s.rttMs ?? 100) * 1.5 + 80)));
  return froze ? Math.max(FROZE_TARGET_MS, own) : own;
}

/** What the camera may send at most, bits/s (web/static/media.js). */
export const MAX_VIDEO_BITRATE = 600_000;
/**
 * For this long after a peer connection encodes its first video frame, the camera sends at most
 * START_VIDEO_BITRATE.
 */
export const START_RAMP_MS = 6000;
export const START_VIDEO_BITRATE = 150_000;

/**
 * The camera's `maxBitrate` (bits/s): our cap, lowered to the server's `publish_limit` when one
 * is set (`limit`, bits/s, or null), and in the first START_RAMP_MS of the ramp
 * (`sinceStartMs`; null before it began: the peer connection's first frame is not encoded yet)
 * to START_VIDEO_BITRATE. Chromium's encoder starts at 300 kbit/s whatever the link: on a
 * 300 kbit/s 4G uplink that start, with the audio, overruns the link before any feedback
 * arrives, and the others see the loss as frozen video from us (docs/media.md, "Start"). The
 * first frame itself is not capped: below 300 kbit/s Chromium drops it and goes to 360p instead
 * of 480p, where it mostly stays.
 * @param {number|null} limit
 * @param {number|null} sinceStartMs
 * @returns {number}
 */
export function cameraBitrate(limit, sinceStartMs) {
  let cap = limit ? Math.min(limit, MAX_VIDEO_BITRATE) : MAX_VIDEO_BITRATE;
  if (sinceStartMs !== null && sinceStartMs < START_RAMP_MS) cap = Math.min(cap, START_VIDEO_BITRATE);
  return cap;
}

const QUALITY_RANK = { unknown: 0, good: 1, fair: 2, poor: 3, lost: 4 };

/**
 * The quality a participant's tile shows: the worse of what its own browser measures
 * (`quality`, its downlink) and what the server receives from it (`upstream`: loss upstream
 * of the server, or `lost` when its packets stopped), so a sender's bad uplink shows as
 * 网络较差 / 连接中断 on its tile for everyone. Unknown only when both are.
 * @param {{quality?: string, upstream?: string}} info
 */
export function shownQuality(info) {
  const a = info.quality || 'unknown';
  const b = info.upstream || 'unknown';
  return (QUALITY_RANK[b] ?? 0) > (QUALITY_RANK[a] ?? 0) ? b : a;
}

export class RoomModel extends EventTarget {
  /**
   * @param {SignalClient & EventTarget} signal  emits 'state' and 'message' (signaling.js);
   *   the model listens to both and sends the user's actions through it
   */
  constructor(signal) {
    super();
    this.signal = signal;
    /** @type {'new'|'lobby'|'joined'|'ended'} */
    this.status = 'new';
    /** Back in the lobby because the last official left (`paused`), not waiting to be let in. */
    this.paused = false;
    /** @type {{code: string, message_zh: string|null} | null} */
    this.final = null;
    this.connection = { state: 'new', attempt: 0, reconnected: false };
    /** @type {string|null} */
    this.me = null;
    /** @type {string|null} */
    this.role = null;
    /** @type {Set<string>} */
    this.permissions = new Set();
    /** @type {Array<object>} */
    this.iceServers = [];
    /** @type {Map<string, Participant>} peer_id → participant, yourself included */
    this.participants = new Map();
    /** @type {Waiting[]} */
    this.lobby = [];
    /** @type {RoomInfo} */
    this.room = {};
    this.recording = false;
    /** @type {{by: string} | null} an unanswered consent request */
    this.consentPrompt = null;
    /** @type {boolean|null} this client's last answer to a consent request */
    this.myConsent = null;
    /** @type {{consented: string[], refused: string[], pending: string[], minutesRequired: boolean} | null} */
    this.consent = null;
    /** @type {Array<object>} chat messages in arrival order */
    this.chat = [];
    /** @type {Map<string, PeerTracks>} peer_id → the tracks received from that participant */
    this.tracks = new Map();
    /** @type {Set<string>} senders whose video the server paused: this client's link is weak */
    this.videoPaused = new Set();
    /** This client chose audio only: it receives no video and sends none. */
    this.audioOnly = false;
    signal.addEventListener('state', (e) => this.applyConnection(/** @type {CustomEvent} */ (e).detail));
    signal.addEventListener('message', (e) => this.apply(/** @type {CustomEvent} */ (e).detail));
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  // ------------------------------------------------------------------ reading

  /** @param {string} permission e.g. 'admit', 'moderate', 'record', 'screen' */
  can(permission) { return this.permissions.has(permission); }

  /** @param {string} peerId */
  participant(peerId) { return this.participants.get(peerId); }

  // ------------------------------------------------------------------ applying the server

  /** The socket's state, from signaling.js's 'state' event. */
  applyConnection({ state, attempt = 0, reconnected = false, reason, message_zh: messageZh }) {
    this.connection = { state, attempt, reconnected: !!reconnected };
    this._emit('connection', { ...this.connection });
    if (state === 'closed') this._end(reason == null ? 'closed' : String(reason), messageZh || null);
  }

  /**
   * Apply one server message (docs/signaling.md, "Server → client messages"). Messages that
   * carry no room state (hello, ack, pong, offer, answer) are ignored.
   * @param {{type: string} & Record<string, any>} msg
   */
  apply(msg) {
    if (this.status === 'ended') return;
    switch (msg.type) {
      case 'welcome': this._welcome(msg); break;
      case 'admitted':
        this.paused = false;
        this._setRoster(msg.participants);
        this._setStatus('joined');
        this._mediaStart('start');
        break;
      case 'paused':
        this.paused = true;
        this._clearTracks();
        this._emit('media', { action: 'stop' });
        this._setStatus('lobby');
        break;
      case 'denied': case 'removed': case 'session_ended':
        this._end(FINAL_MESSAGES[msg.type], null);
        break;
      case 'participant_joined': case 'participant_update':
        this.participants.set(msg.participant.peer_id, msg.participant);
        this._emitParticipants();
        break;
      case 'participant_left':
        this.participants.delete(msg.peer_id);
        this._dropTracks(msg.peer_id);
        this._emitParticipants();
        break;
      case 'lobby_update': this._setLobby(msg.waiting); break;
      case 'room_update': this._setRoom(msg.room); break;
      case 'recording_state': this._setRecording(msg.active); break;
      case 'chat_message':
        this.chat.push(msg);
        this._emit('chat', { message: msg, mine: msg.from_peer === this.me });
        break;
      case 'consent_request':
        this.consentPrompt = { by: msg.by };
        this._emit('consent_prompt', { prompt: this.consentPrompt });
        break;
      case 'consent_state':
        this.consent = {
          consented: msg.consented, refused: msg.refused, pending: msg.pending,
          minutesRequired: !!msg.minutes_required,
        };
        this._emit('consent', { ...this.consent });
        break;
      case 'forced_mute': this._emit('forced_mute', { kind: msg.kind, muted: msg.muted, by: msg.by }); break;
      case 'unmute_request': this._emit('unmute_request', { kind: msg.kind, by: msg.by }); break;
      case 'publish_limit': this._emit('publish_limit', { maxKbps: msg.max_kbps ?? null }); break;
      case 'video_paused': case 'video_resumed':
        for (const peer of msg.peers || []) {
          if (msg.type === 'video_paused') this.videoPaused.add(peer);
          else this.videoPaused.delete(peer);
        }
        this._emitVideoPaused();
        break;
      case 'error':
        // Answers to our own requests reach whoever asked; the rest is news for the user.
        if (!msg.re) this._emit('notice', { code: msg.code, message_zh: msg.message_zh || null });
        // The server gave up on our media connection (ICE consent lost): rebuild it now, a new
        // connection and offer, rather than wait for our side to notice (docs/signaling.md).
        if (!msg.re && msg.code === 'media_failed' && this.status === 'joined') {
          this._clearTracks();
          this._mediaStart('start');
        }
        break;
      default: break;
    }
  }

  _welcome(w) {
    this.me = w.peer_id;
    this.role = w.role;
    this.permissions = new Set(w.permissions);
    this.iceServers = w.ice_servers || [];
    this._emit('self', { peerId: this.me, role: this.role, permissions: [...this.permissions] });
    this._setRoom(w.room || {});
    this._setRoster(w.participants || []);
    this._setLobby(w.lobby || []);
    if (w.status === 'joined') this.paused = false;
    this._setStatus(w.status);
    if (w.status === 'joined') {
      // A resume keeps the media connection unless the server says it is gone (a new owner
      // node, never negotiated); the page also restarts one that failed meanwhile.
      this._mediaStart(w.media_reset || !w.resumed ? 'start' : 'keep');
    }
  }

  _setStatus(status) {
    this.status = status;
    this._emit('status', { status, paused: this.paused, final: this.final });
  }

  _setRoster(list) {
    this.participants.clear();
    for (const p of list) this.participants.set(p.peer_id, p);
    this._emitParticipants();
  }

  _emitParticipants() { this._emit('participants', { participants: [...this.participants.values()] }); }

  _setLobby(waiting) {
    this.lobby = [...waiting];
    this._emit('lobby', { waiting: this.lobby });
  }

  _setRoom(room) {
    this.room = { ...room };
    this._emit('room', { room: this.room });
    this._setRecording(room.recording);
  }

  _setRecording(active) {
    this.recording = !!active;
    this.room = { ...this.room, recording: this.recording };
    this._emit('recording', { active: this.recording });
  }

  /** The end, whatever caused it; the first cause wins (a `denied` before its socket close). */
  _end(code, messageZh) {
    if (this.status === 'ended') return;
    this._clearTracks();
    this._emit('media', { action: 'stop' });
    this.final = { code: code || 'closed', message_zh: messageZh };
    this.consentPrompt = null;
    this._setStatus('ended');
  }

  // ------------------------------------------------------------------ received tracks

  /**
   * A track arrived on the media connection: find its participant from the id, and its slot.
   * A second live video track from the same participant is the screen share.
   * @param {TrackLike} track
   * @returns {{peerId: string, kind: string, slot: 'camera'|'screen', track: TrackLike,
   *   participant: Participant|undefined}}
   */
  trackReceived(track) {
    const peerId = peerOfTrackId(track.id);
    const { kind } = track;
    let entry = this.tracks.get(peerId);
    if (!entry) { entry = { audio: null, video: null, screen: null }; this.tracks.set(peerId, entry); }
    const camera = entry.video;
    /** @type {'camera'|'screen'} */
    let slot = 'camera';
    if (kind === 'video' && camera && camera.readyState === 'live' && camera.id !== track.id) {
      slot = 'screen';
      entry.screen = track;
    } else if (kind === 'audio' || kind === 'video') {
      entry[kind] = track;
    }
    const detail = { peerId, kind, slot, track, participant: this.participants.get(peerId) };
    this._emit('track', detail);
    return detail;
  }

  /**
   * A received screen-share track ended or went silent: its tile goes.
   * @param {TrackLike} track
   */
  trackEnded(track) {
    for (const [peerId, entry] of this.tracks) {
      if (entry.screen === track) {
        entry.screen = null;
        this._emit('track_removed', { peerId, slot: 'screen' });
      }
    }
  }

  /** @param {string} peerId */
  tracksOf(peerId) { return this.tracks.get(peerId) || null; }

  /**
   * The participant a received track belongs to (undefined before their roster entry arrives).
   * @param {string} trackId
   */
  participantOfTrack(trackId) { return this.participants.get(peerOfTrackId(trackId)); }

  /** A media connection starts (or is kept): nothing is paused on a new one yet, and the
   * server is told again that this client wants audio only (it forgets with the connection). */
  _mediaStart(action) {
    if (action === 'start' && this.videoPaused.size) { this.videoPaused.clear(); this._emitVideoPaused(); }
    this._emit('media', { action });
    if (this.audioOnly) this.signal.send({ type: 'receive_video', enabled: false });
  }

  _emitVideoPaused() { this._emit('video_paused', { peers: [...this.videoPaused] }); }

  _dropTracks(peerId) {
    if (this.videoPaused.delete(peerId)) this._emitVideoPaused();
    this.tracks.delete(peerId);
    this._emit('track_removed', { peerId, slot: 'all' });
  }

  _clearTracks() {
    for (const peerId of [...this.tracks.keys()]) this._dropTracks(peerId);
  }

  // ------------------------------------------------------------------ the user's actions

  /** Leave on purpose (no reconnect). */
  async leave() {
    await this.signal.leave();
    this._end('left', null);
  }

  /** The join failed before any welcome (signaling's connect() rejected). */
  failed(code, messageZh) { this._end(code, messageZh || null); }

  /** @param {string} peerId */
  admit(peerId) { return this.signal.send({ type: 'admit', peer_id: peerId }); }

  /** @param {string} peerId */
  deny(peerId) { return this.signal.send({ type: 'deny', peer_id: peerId }); }

  /** @param {string} peerId */
  remove(peerId) { return this.signal.send({ type: 'remove', peer_id: peerId }); }

  /** Force-mute a participant's microphone, or lift it when it is forced already. */
  toggleForceMute(peerId) {
    const p = this.participants.get(peerId);
    return this.signal.send({ type: 'force_mute', peer_id: peerId, kind: 'audio', muted: !(p && p.forced_audio) });
  }

  toggleLock() { return this.signal.send({ type: 'lock', locked: !this.room.locked }); }

  /** End the session for everybody; resolves on the server's ack, rejects on its error. */
  endSession(timeoutMs = 15000) { return this.signal.request({ type: 'end_session' }, timeoutMs); }

  requestConsent() { return this.signal.send({ type: 'request_consent' }); }

  /** Answer the host's consent request. @param {boolean} consent */
  answerConsent(consent) {
    this.myConsent = consent;
    this.consentPrompt = null;
    this._emit('consent_prompt', { prompt: null });
    return this.signal.send({ type: 'recording_consent', consent });
  }

  /** Rejects with the server's typed error (consent_missing, consent_refused, …). */
  startRecording() { return this.signal.request({ type: 'recording_start' }); }

  stopRecording() { return this.signal.send({ type: 'recording_stop' }); }

  /** Resolves once the server acknowledged it; rejects with its error. @param {string} text */
  sendChat(text) { return this.signal.request({ type: 'chat', text }); }

  /**
   * Audio only on or off: the server stops (or resumes) forwarding video to this client; the
   * page stops sending its own camera (room.js). @param {boolean} on
   */
  setAudioOnly(on) {
    this.audioOnly = !!on;
    this._emit('audio_only', { on: this.audioOnly });
    return this.signal.send({ type: 'receive_video', enabled: !this.audioOnly });
  }

  /** Own presence: {muted_audio} / {muted_video} / {quality}. */
  setPresence(fields) { return this.signal.send({ type: 'presence', ...fields }); }
}
