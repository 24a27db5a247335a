# Used by profile.sh: reads folded call stacks (root;...;leaf, one sample a
# line; kernel and libc frames marked "[kernel] ", "[libc] ") and prints the
# share of samples per layer, each sample going to the innermost frame whose
# own name (not its type parameters) a layer claims.
function layer(f) {
    if (f ~ /^<?&?(snow::handshakestate|libp2p_noise::io::handshake|libp2p_noise::protocol|curve25519_dalek|x25519_dalek|ed25519_dalek|libp2p_identity::ed25519)/) return "noise handshake (X25519, Ed25519)";
    if (f ~ /chacha20_poly1305|^<?snow::|^<?libp2p_noise/) return "noise transport (ChaCha20-Poly1305)";
    if (f ~ /^<?libp2p_kad::kbucket/) return "kademlia routing table";
    if (f ~ /^<?libp2p_kad/) return "kademlia";
    if (f ~ /^<?libp2p_identify/) return "identify";
    if (f ~ /^<?libp2p_ping/) return "ping";
    if (f ~ /^<?libp2p_stream/) return "libp2p-stream";
    if (f ~ /^<?libp2p_request_response/) return "request-response";
    if (f ~ /^<?multistream_select/) return "multistream-select";
    if (f ~ /^<?(yamux|libp2p_yamux)/) return "yamux";
    if (f ~ /^<?(sha2|ring_core.*sha|protocol::merkle)/) return "sha-256 (chunk hashing)";
    if (f ~ /^<?protocol::/) return "protocol crate (picker, choker, wire)";
    if (f ~ /^<?node::/) return "node crate (engine, storage, wire)";
    if (f ~ /^<?libp2p_tcp|^<?libp2p_quic|^<?quinn/) return "tcp/quic transport";
    if (f ~ /^<?libp2p_swarm|^<?libp2p_core/) return "libp2p swarm";
    if (f ~ /^<?tokio::/) return "tokio runtime (scheduling, IO driver, syscalls under it)";
    return "";
}
{
    n = split($0, F, ";"); c = "";
    for (i = n; i >= 1; i--) { l = layer(F[i]); if (l != "") { c = l; break } }
    # Stacks the unwinder cut short: go by where the leaf runs.
    if (c == "" && F[n] ~ /^\[kernel\]/) c = "kernel, caller not unwound (syscalls, TCP, scheduling)";
    if (c == "" && F[n] ~ /^\[libc\]/) c = "libc, caller not unwound (malloc, free, memcpy)";
    if (c == "") c = "other (no recognised frame)";
    cnt[c]++; t++
}
END { for (c in cnt) printf "%5.1f%% %s\n", 100 * cnt[c] / t, c }
