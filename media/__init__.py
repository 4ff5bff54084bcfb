"""Passthrough SFU on aiortc. Imports nothing from onedoor (only aiortc, aioice, PyAV).

publisher ─RTP─► PeerSession ─► TrackForwarder ─► ForwardedTrack ─► PeerSession ─► subscriber
                   (no decode)      ├─► Recording (WebM, PyAV, writer thread)   (no encode)
                                    ◄── PLI/FIR from subscribers, ≈1/s per publisher

- `interfaces.py`: the MediaNode Protocol and values signaling sees; `errors.py`: MediaFailure.
- `sfu.py`: `SfuMediaNode` (negotiation, peers, recording), in this process; `forwarding.py`:
  `TrackForwarder`, `ForwardedTrack`, `PeerSession`, `Room`.
- `workers.py`: `WorkerPoolMediaNode`, the same in one worker process per core, each room
  pinned to one worker.
- `adapter/`: every aiortc/aioice internal we touch, checked at start-up (a package).
- `recorder.py`: WebM muxing of encoded frames; `speaker.py`: active speaker from audio levels.
"""
