// A console that watches a meeting: it receives every site and sends nothing, so it asks for no
// camera or microphone (docs/SIGNALING.md §2.3, `offer` with `watch`). A data channel gives the
// first offer something to negotiate; the server then offers the sites' streams, and the page's
// `Live` answers those offers as for any peer connection of the page.

/** Starts watching `meeting` on `live` (its previous media stopped). `onFailed` is called if
 * the connection fails later. */
export async function watch(live, meeting, onFailed) {
  live.stopMedia();
  const shared = live.hnth;
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: [] });
  shared.pc = pc;
  shared.meeting = meeting;
  pc.createDataChannel('watch');
  pc.addEventListener('track', (e) => {
    const stream = e.streams[0];
    if (!stream || shared.pc !== pc) return;
    shared.streams.set(stream.id, stream);
    // A site that leaves takes its tracks away: its tile goes with the last one.
    stream.addEventListener('removetrack', () => {
      if (stream.getTracks().length > 0 || shared.streams.get(stream.id) !== stream) return;
      shared.streams.delete(stream.id);
      live.syncTiles();
    });
    live.syncTiles();
  });
  pc.addEventListener('connectionstatechange', () => {
    if (shared.pc === pc && pc.connectionState === 'failed') onFailed();
  });
  await pc.setLocalDescription(await pc.createOffer());
  live.send({ type: 'offer', meeting: meeting.id, sdp: pc.localDescription.sdp, watch: true });
}
