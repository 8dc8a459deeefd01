import BFTCrypto
import BFTSession
import Testing

/// Deterministic generator for ephemeral keys (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A small cluster: 4 replicas and 2 clients with fixed Ed25519 seeds, like cluster.json.
struct TestCluster {
    static let clusterID: UInt32 = 1
    let identities: [SessionPrincipal: Ed25519PrivateKey]
    let keyring: @Sendable (SessionPrincipal) -> Ed25519PublicKey?

    init() throws {
        var ids: [SessionPrincipal: Ed25519PrivateKey] = [:]
        for r in 0..<4 { ids[.replica(UInt32(r))] = try Ed25519PrivateKey(seed: [UInt8](repeating: UInt8(r + 1), count: 32)) }
        for c in 0..<2 { ids[.client(UInt32(c))] = try Ed25519PrivateKey(seed: [UInt8](repeating: UInt8(0x40 + c), count: 32)) }
        identities = ids
        let publics = ids.mapValues { $0.publicKey }
        keyring = { publics[$0] }
    }

    /// Config for `principal`, with a fresh (seeded) Noise static key; override pieces to misbehave.
    func config(_ principal: SessionPrincipal, seed: UInt64, clusterID: UInt32 = TestCluster.clusterID,
                signingKey: Ed25519PrivateKey? = nil, maxRecordBytes: Int = 70_000) throws -> SessionConfig {
        var g = SeededGenerator(seed: seed)
        let key: Ed25519PrivateKey
        if let signingKey { key = signingKey } else { key = try Ed25519PrivateKey(seed: [UInt8](repeating: 0xee, count: 32)) }
        return SessionConfig(clusterID: clusterID, principal: principal,
                             signingKey: signingKey ?? identities[principal] ?? key,
                             staticKey: try X25519.PrivateKey(using: &g),
                             limits: SessionLimits(maxRecordBytes: maxRecordBytes), keyring: keyring)
    }
}

/// Runs the three messages; returns (initiator's session, responder's session).
func handshake(_ initiator: SessionConfig, _ responder: SessionConfig, expecting: SessionPrincipal,
               seed: UInt64 = 42) throws -> (Session, Session) {
    var g = SeededGenerator(seed: seed)
    var i = try InitiatorHandshake(config: initiator, expectedPeer: expecting, random: &g)
    var r = try ResponderHandshake(config: responder, random: &g)
    let m1 = try i.start()
    let m2 = try r.respond(to: m1)
    let (m3, si) = try i.finish(m2)
    let sr = try r.finish(m3)
    return (si, sr)
}

/// Expects `body` to throw exactly `reason`.
func expectFailure(_ reason: SessionError, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(reason), nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? SessionError == reason, "got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Authenticated sessions: handshake")
struct SessionHandshakeTests {
    let cluster: TestCluster
    init() throws { cluster = try TestCluster() }

    @Test("replica ↔ replica: both sides authenticated, same handshake hash, records flow both ways")
    func replicaToReplica() throws {
        let (a, b) = try handshake(try cluster.config(.replica(0), seed: 1), try cluster.config(.replica(1), seed: 2),
                                   expecting: .replica(1))
        #expect(a.peer == .replica(1))
        #expect(b.peer == .replica(0))
        #expect(a.isInitiator && !b.isInitiator)
        #expect(a.handshakeHash == b.handshakeHash)
        #expect(a.handshakeHash.count == 32)
        #expect(a.peerStaticKey == (try cluster.config(.replica(1), seed: 2)).staticKey.publicKey)
        #expect(try b.open(a.seal(Array("prepare".utf8))) == Array("prepare".utf8))
        #expect(try a.open(b.seal(Array("commit".utf8))) == Array("commit".utf8))
    }

    @Test("client ↔ replica")
    func clientToReplica() throws {
        let (c, r) = try handshake(try cluster.config(.client(1), seed: 3), try cluster.config(.replica(2), seed: 4),
                                   expecting: .replica(2))
        #expect(c.peer == .replica(2))
        #expect(r.peer == .client(1))
        #expect(c.handshakeHash == r.handshakeHash)
        #expect(try r.open(c.seal([1, 2, 3])) == [1, 2, 3])
        #expect(try c.open(r.seal([])) == [])
    }

    @Test("handshake bytes are a function of the injected randomness")
    func deterministic() throws {
        func transcript(seed: UInt64) throws -> [[UInt8]] {
            var g = SeededGenerator(seed: seed)
            var i = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 5), expectedPeer: .replica(0), random: &g)
            var r = try ResponderHandshake(config: try cluster.config(.replica(0), seed: 6), random: &g)
            let m1 = try i.start(); let m2 = try r.respond(to: m1); let (m3, _) = try i.finish(m2)
            return [m1, m2, m3]
        }
        let t = try transcript(seed: 9)
        #expect(t.map(\.count) == [32, 165, 133])
        #expect(try transcript(seed: 9) == t)
        #expect(try transcript(seed: 10) != t)
    }

    @Test("responder signs with a key other than its cluster key → identity_signature_invalid")
    func wrongResponderKey() throws {
        let impostorKey = try Ed25519PrivateKey(seed: [UInt8](repeating: 0x99, count: 32))
        expectFailure(.identitySignatureInvalid) {
            _ = try handshake(try! cluster.config(.client(0), seed: 1),
                              try! cluster.config(.replica(1), seed: 2, signingKey: impostorKey), expecting: .replica(1))
        }
    }

    @Test("initiator signs with a key other than its cluster key → responder refuses")
    func wrongInitiatorKey() throws {
        // Replica 3's key used to claim client 0.
        let stolenOther = cluster.identities[.replica(3)]!
        var g = SeededGenerator(seed: 1)
        var i = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 1, signingKey: stolenOther),
                                       expectedPeer: .replica(1), random: &g)
        var r = try ResponderHandshake(config: try cluster.config(.replica(1), seed: 2), random: &g)
        let (m3, _) = try i.finish(try r.respond(to: try i.start()))
        expectFailure(.identitySignatureInvalid) { _ = try r.finish(m3) }
        // The failed responder handshake is dead.
        expectFailure(.handshakeOutOfOrder) { _ = try r.finish(m3) }
    }

    @Test("peers configured for different clusters → the prologue mismatch fails decryption")
    func wrongCluster() throws {
        expectFailure(.handshakeDecryptFailed) {
            _ = try handshake(try! cluster.config(.client(0), seed: 1),
                              try! cluster.config(.replica(1), seed: 2, clusterID: 2), expecting: .replica(1))
        }
    }

    @Test("a man in the middle with its own static keys relays the responder's proof → initiator refuses")
    func manInTheMiddle() throws {
        let prologue = IdentityBinding.prologue(clusterID: TestCluster.clusterID)
        var g = SeededGenerator(seed: 77)
        let mitmStatic = try X25519.PrivateKey(using: &g)
        var initiator = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 1), expectedPeer: .replica(1), random: &g)
        var responder = try ResponderHandshake(config: try cluster.config(.replica(1), seed: 2), random: &g)
        // The MITM runs one Noise handshake facing each victim, with its own static and ephemeral keys.
        var towardsInitiator = HandshakeState(pattern: .xx, initiator: false, prologue: prologue,
                                              localStatic: mitmStatic, localEphemeral: try X25519.PrivateKey(using: &g))
        var towardsResponder = HandshakeState(pattern: .xx, initiator: true, prologue: prologue,
                                              localStatic: mitmStatic, localEphemeral: try X25519.PrivateKey(using: &g))
        _ = try towardsInitiator.readMessage(try initiator.start())
        let m2FromResponder = try responder.respond(to: try towardsResponder.writeMessage(payload: []))
        let responderProof = try towardsResponder.readMessage(m2FromResponder)
        #expect(towardsResponder.remoteStatic != mitmStatic.publicKey)
        // Relay the genuine proof (replica 1, valid signature over the MITM↔responder transcript).
        let forged = try towardsInitiator.writeMessage(payload: responderProof)
        expectFailure(.identitySignatureInvalid) { _ = try initiator.finish(forged) }
        // Control: the relayed proof is genuine for the handshake it was made in.
        #expect(throws: Never.self) {
            try IdentityBinding.verifyProof(responderProof, clusterID: TestCluster.clusterID,
                                            handshakeHash: towardsResponder.hashBeforeLastPayload,
                                            peerStaticKey: towardsResponder.remoteStatic, keyring: cluster.keyring)
        }
    }

    @Test("a MITM that keeps the victims' static keys but re-encrypts cannot: it lacks their private keys")
    func relaySwappingEphemerals() throws {
        // Relaying message 1 and 2 byte for byte works; the only change a relay can make to a
        // static key is inside ciphertext, which fails authentication.
        var g = SeededGenerator(seed: 5)
        var initiator = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 1), expectedPeer: .replica(1), random: &g)
        var responder = try ResponderHandshake(config: try cluster.config(.replica(1), seed: 2), random: &g)
        var m2 = try responder.respond(to: try initiator.start())
        let other = try X25519.PrivateKey(using: &g).publicKey.rawRepresentation
        for k in 0..<32 { m2[32 + k] ^= other[k] } // XOR a different key into the encrypted static
        expectFailure(.handshakeDecryptFailed) { _ = try initiator.finish(m2) }
    }

    @Test("the responder proves a different replica than the one dialled → unexpected_principal")
    func unexpectedReplica() throws {
        expectFailure(.unexpectedPrincipal) {
            _ = try handshake(try! cluster.config(.client(0), seed: 1), try! cluster.config(.replica(3), seed: 2),
                              expecting: .replica(2))
        }
    }

    @Test("a principal missing from the keyring → unknown_principal (either side)")
    func unknownPrincipal() throws {
        let stranger = try Ed25519PrivateKey(seed: [UInt8](repeating: 0x77, count: 32))
        expectFailure(.unknownPrincipal) {
            _ = try handshake(try! cluster.config(.client(0), seed: 1),
                              try! cluster.config(.replica(9), seed: 2, signingKey: stranger), expecting: .replica(9))
        }
        expectFailure(.unknownPrincipal) {
            _ = try handshake(try! cluster.config(.client(5), seed: 1, signingKey: stranger),
                              try! cluster.config(.replica(0), seed: 2), expecting: .replica(0))
        }
    }

    @Test("handshake size limits and lengths are enforced before any crypto")
    func handshakeLimits() throws {
        var g = SeededGenerator(seed: 3)
        var r = try ResponderHandshake(config: try cluster.config(.replica(0), seed: 2), random: &g)
        expectFailure(.handshakeMessageTooLarge) { _ = try r.respond(to: [UInt8](repeating: 0, count: 1025)) }
        var r2 = try ResponderHandshake(config: try cluster.config(.replica(0), seed: 2), random: &g)
        expectFailure(.handshakeMalformed) { _ = try r2.respond(to: [UInt8](repeating: 9, count: 33)) }
        var i = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 1), expectedPeer: .replica(0), random: &g)
        _ = try i.start()
        expectFailure(.handshakeMalformed) { _ = try i.finish([UInt8](repeating: 0, count: 164)) }
        var i2 = try InitiatorHandshake(config: try cluster.config(.client(0), seed: 1), expectedPeer: .replica(0), random: &g)
        expectFailure(.handshakeOutOfOrder) { _ = try i2.finish([UInt8](repeating: 0, count: 165)) }
    }

    @Test("an ephemeral low-order point from the initiator → low_order_key")
    func lowOrderEphemeral() throws {
        var g = SeededGenerator(seed: 3)
        var r = try ResponderHandshake(config: try cluster.config(.replica(0), seed: 2), random: &g)
        expectFailure(.lowOrderKey) { _ = try r.respond(to: [UInt8](repeating: 0, count: 32)) }
    }

    @Test("a proof with an unknown principal kind → malformed_identity")
    func malformedIdentity() throws {
        let config = try cluster.config(.replica(0), seed: 2)
        var proof = IdentityBinding.makeProof(principal: .replica(0), signingKey: config.signingKey, clusterID: 1,
                                              handshakeHash: [UInt8](repeating: 0, count: 32), staticKey: config.staticKey.publicKey)
        proof[0] = 0x03
        expectFailure(.malformedIdentity) {
            _ = try IdentityBinding.verifyProof(proof, clusterID: 1, handshakeHash: [UInt8](repeating: 0, count: 32),
                                                peerStaticKey: config.staticKey.publicKey, keyring: cluster.keyring)
        }
        expectFailure(.malformedIdentity) {
            _ = try IdentityBinding.verifyProof(Array(proof.dropLast()), clusterID: 1, handshakeHash: [UInt8](repeating: 0, count: 32),
                                                peerStaticKey: config.staticKey.publicKey, keyring: cluster.keyring)
        }
    }
}

@Suite("Authenticated sessions: records")
struct SessionRecordTests {
    let a: Session // initiator (client 0)
    let b: Session // responder (replica 1)

    init() throws {
        let cluster = try TestCluster()
        (a, b) = try handshake(try cluster.config(.client(0), seed: 1, maxRecordBytes: 70_000),
                               try cluster.config(.replica(1), seed: 2, maxRecordBytes: 70_000), expecting: .replica(1))
    }

    @Test("record layout: 12-byte header (seq, length) + ciphertext + 16-byte tag")
    func layout() throws {
        let r0 = try a.seal([1, 2, 3, 4, 5])
        let r1 = try a.seal([1, 2, 3, 4, 5])
        #expect(r0.count == 5 + Session.recordOverhead)
        #expect(Array(r0[0..<12]) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5])
        #expect(Array(r1[0..<12]) == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5])
        #expect(r0[12...] != r1[12...]) // a new nonce per record
        #expect(Array(r0[12..<17]) != [1, 2, 3, 4, 5]) // encrypted
    }

    @Test("a truncated record → record_truncated, then the session is closed")
    func truncated() throws {
        let record = try a.seal(Array(repeating: 7, count: 100))
        expectFailure(.recordTruncated) { _ = try b.open(Array(record.dropLast())) }
        expectFailure(.sessionClosed) { _ = try b.open(record) }
        #expect(b.failure == .recordTruncated)
        expectFailure(.recordTruncated) { _ = try a.open(Array(record.prefix(20))) }
    }

    @Test("a flipped bit anywhere in ciphertext or tag → record_authentication_failed")
    func flippedBit() throws {
        let cluster = try TestCluster()
        let record = try a.seal(Array(repeating: 0x5a, count: 40))
        for i in Session.headerByteCount..<record.count {
            // A fresh pair per position (any failure closes a session); same seeds → same keys.
            let (x, y) = try handshake(try cluster.config(.client(0), seed: 1), try cluster.config(.replica(1), seed: 2),
                                       expecting: .replica(1))
            var bad = try x.seal(Array(repeating: 0x5a, count: 40))
            #expect(bad == record)
            bad[i] ^= 1 << (i % 8)
            expectFailure(.recordAuthenticationFailed) { _ = try y.open(bad) }
        }
        // The header is authenticated too: a changed length fails as truncated/malformed, a
        // changed sequence number as replay/reorder — all before decryption.
        var longer = record; longer[11] &+= 1
        expectFailure(.recordTruncated) { _ = try b.open(longer) }
    }

    @Test("a replayed record → record_replayed")
    func replayed() throws {
        let r0 = try a.seal([1])
        #expect(try b.open(r0) == [1])
        expectFailure(.recordReplayed) { _ = try b.open(r0) }
        expectFailure(.sessionClosed) { _ = try b.seal([2]) }
    }

    @Test("reordered records → record_out_of_order")
    func reordered() throws {
        _ = try a.seal([1])
        let r1 = try a.seal([2])
        expectFailure(.recordOutOfOrder) { _ = try b.open(r1) }
    }

    @Test("a record reflected back to its sender → record_authentication_failed (directions have different keys)")
    func reflected() throws {
        // Neither side has received anything, so the reflected record carries exactly the
        // sequence number its sender expects next: only the key separation can reject it.
        let fromA = try a.seal(Array("to replica".utf8))
        let fromB = try b.seal(Array("to client".utf8))
        expectFailure(.recordAuthenticationFailed) { _ = try a.open(fromA) }
        expectFailure(.recordAuthenticationFailed) { _ = try b.open(fromB) }
        // Control: the same records open at their real destination (a pair rebuilt from the
        // same seeds has the same keys).
        let cluster = try TestCluster()
        let (x, y) = try handshake(try cluster.config(.client(0), seed: 1, maxRecordBytes: 70_000),
                                   try cluster.config(.replica(1), seed: 2, maxRecordBytes: 70_000), expecting: .replica(1))
        #expect(try y.open(fromA) == Array("to replica".utf8))
        #expect(try x.open(fromB) == Array("to client".utf8))
    }

    @Test("frame bodies and records above the limit → record_too_large")
    func tooLarge() throws {
        let cluster = try TestCluster()
        let (x, y) = try handshake(try cluster.config(.client(0), seed: 1, maxRecordBytes: 1024),
                                   try cluster.config(.replica(1), seed: 2, maxRecordBytes: 1024), expecting: .replica(1))
        #expect(x.limits.maxFrameBodyBytes == 1024 - 28)
        #expect(try y.open(x.seal(Array(repeating: 1, count: 996))).count == 996)
        expectFailure(.recordTooLarge) { _ = try x.seal(Array(repeating: 1, count: 997)) }
        expectFailure(.recordTooLarge) { _ = try y.open(Array(repeating: 0, count: 1025)) }
    }

    @Test("10,000 records round-trip in both directions, sizes 0 … 4 KiB")
    func tenThousand() throws {
        var g = SeededGenerator(seed: 99)
        for n in 0..<10_000 {
            let size = Int(g.next() % 4097)
            let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) }
            if n % 2 == 0 {
                #expect(try b.open(a.seal(body)) == body)
            } else {
                #expect(try a.open(b.seal(body)) == body)
            }
        }
        #expect(a.nextSendSequence == 5000 && b.nextReceiveSequence == 5000)
        #expect(b.nextSendSequence == 5000 && a.nextReceiveSequence == 5000)
    }
}
