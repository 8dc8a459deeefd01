import BFTCore
import BFTCrypto
import Testing

/// The wire codec is canonical: a signature covers exact bytes, so every decodable body must
/// re-encode to the same bytes and anything else must be refused without crashing.
@Suite("Canonical codec")
struct CodecTests {
    static let sig = StandInSignatures(seed: 1, replicas: 4, clients: 2)

    static func s<M: SignedMessage>(_ m: M) -> M {
        let p = m.signer
        return m.signed(with: sig.signer(for: p), clusterID: 3)
    }

    static var samples: [Message] {
        let r = s(Request(client: 1, timestamp: 77, sessionStart: true, operation: Array("SET a 1".utf8)))
        let pp = s(PrePrepare(view: 2, seq: 9, replica: 2, requests: [r]))
        let p = s(Prepare(view: 2, seq: 9, digest: pp.digest, replica: 1))
        let cm = s(Commit(view: 2, seq: 9, digest: pp.digest, replica: 3))
        let cp = s(Checkpoint(seq: 8, digest: SHA256.hash([1]), replica: 0))
        let vc = s(ViewChange(newView: 3, stableSeq: 8, stableDigest: cp.digest, checkpointProof: [cp],
                              prepared: [PreparedCertificate(prePrepare: pp.header, prepares: [p])], replica: 1))
        let nv = s(NewView(view: 3, viewChanges: [vc], prePrepares: [s(PrePrepare(view: 3, seq: 9, replica: 3, requests: [])).header], replica: 3))
        let state: [UInt8] = Array(repeating: 9, count: 5000)
        let manifest = StateManifest(state: state, chunkBytes: 4096)
        return [
            .request(r), .reply(s(Reply(view: 2, timestamp: 77, client: 1, replica: 0, result: [1, 2]))),
            .prePrepare(pp), .prepare(p), .commit(cm), .checkpoint(cp), .viewChange(vc), .newView(nv),
            .status(s(Status(view: 2, lastExecuted: 9, stableSeq: 8, replica: 2))),
            .fetch(s(Fetch(view: 2, lastExecuted: 3, replica: 1, stateSeq: 8, nextChunk: 1, batches: [pp.digest]))),
            .catchUp(s(CatchUp(entries: [CatchUpEntry(certificate: CommittedCertificate(prePrepare: pp.header, commits: [cm]), requests: [r])],
                               newView: nv, replica: 0))),
            .stateTransfer(s(StateTransfer(seq: 8, proof: [cp], manifest: manifest, index: 1, chunk: Array(state[4096...]), replica: 0))),
            .batch(s(BatchBody(replica: 2, requests: [r]))),
        ]
    }

    @Test("every message kind round-trips and re-encodes to the same bytes", arguments: CodecTests.samples)
    func roundTrip(_ m: Message) throws {
        let bytes = m.encoded()
        let back = try Message.decode(kind: m.kind.rawValue, body: bytes)
        #expect(back == m)
        #expect(back.encoded() == bytes)
    }

    @Test("every truncation of every message kind is refused", arguments: CodecTests.samples)
    func truncationRefused(_ m: Message) {
        let bytes = m.encoded()
        for cut in 0..<bytes.count {
            #expect(throws: DecodeError.self) { try Message.decode(kind: m.kind.rawValue, body: Array(bytes.prefix(cut))) }
        }
    }

    @Test("trailing bytes, unknown kinds and non-canonical booleans are refused")
    func nonCanonicalRefused() {
        let m = CodecTests.samples[0]
        #expect(throws: DecodeError.trailingBytes(1)) { try Message.decode(kind: 1, body: m.encoded() + [0]) }
        #expect(throws: DecodeError.unknownKind(99)) { try Message.decode(kind: 99, body: m.encoded()) }
        var bytes = m.encoded()
        bytes[12] = 2  // the sessionStart boolean of a request
        #expect(throws: DecodeError.invalidValue("boolean byte 2")) { try Message.decode(kind: 1, body: bytes) }
    }

    @Test("a length over its named limit is refused before allocation")
    func oversizedRefused() {
        var w = WireWriter()
        w.u32(1); w.u64(1); w.bool(false); w.u32(UInt32.max)  // operation claims 4 GiB
        #expect(throws: DecodeError.tooLarge(field: "operation", size: Int(UInt32.max), limit: MessageLimits.default.maxOperationBytes)) {
            try Message.decode(kind: 1, body: w.bytes)
        }
        var batch = WireWriter()
        batch.u64(0); batch.u64(1); batch.u16(0); batch.u32(100_000)  // 100k requests claimed
        #expect(throws: DecodeError.self) { try Message.decode(kind: MessageKind.prePrepare.rawValue, body: batch.bytes) }
    }

    @Test("random bytes never crash the decoder")
    func randomBytesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let kind = UInt8.random(in: 0...14, using: &rng)
            let bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if let m = try? Message.decode(kind: kind, body: bytes) { #expect(m.encoded() == bytes) }
        }
    }

    @Test("golden bytes pin the PREPARE encoding")
    func goldenPrepare() {
        var p = Prepare(view: 1, seq: 2, digest: Digest(bytes: Array(repeating: 0xab, count: 32))!, replica: 3)
        p.signature = Array(repeating: 0x5a, count: 64)
        let hex = Hex.encode(p.encoded)
        #expect(hex == "0000000000000001" + "0000000000000002" + String(repeating: "ab", count: 32) + "0003" + String(repeating: "5a", count: 64))
        #expect(Hex.encode(p.signingBytes(clusterID: 0x01020304)).hasPrefix("0401020304"))
    }
}

extension Message: CustomTestStringConvertible {
    public var testDescription: String { "\(kind)" }
}
