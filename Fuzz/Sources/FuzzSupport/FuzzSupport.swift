import BFTCore

/// Fails the current fuzz input with a readable message.
///
/// Why `fatalError` and not `precondition`: in `-O` builds `precondition` traps without its
/// message, and a crash report that says *which* property broke saves a debugging session.
/// Run the fuzzers with `SWIFT_BACKTRACE=enable=no` so the trap reaches libFuzzer's handler,
/// which then writes the `crash-*` file.
public func fuzzFail(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fatalError("fuzz property violated: \(message())", file: file, line: line)
}

/// `fuzzFail` unless `condition` holds.
@inline(__always)
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fuzzFail(message(), file: file, line: line) }
}

/// Lower-case hex of at most `limit` bytes, for failure messages.
public func fuzzHex<C: Collection>(_ bytes: C, limit: Int = 96) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes.prefix(limit) {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    let suffix = bytes.count > limit ? "…(\(bytes.count) bytes)" : ""
    return String(decoding: out, as: UTF8.self) + suffix
}

/// The fuzz input as an array (libFuzzer's buffer is only valid during the call).
public func fuzzInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}

/// Choices derived from the input come from the project's SplitMix64, so a crash replays.
public typealias FuzzRandom = SplitMix64

/// The checks every decoded message must pass, shared by the message and request targets.
///
/// - The encoding is canonical: `decode` accepted `body`, so `encoded()` must give back
///   exactly `body` (a signature covers exact bytes; two encodings of one message would let
///   a relayed message change its bytes, and its digest, without breaking the signature).
/// - Decoding is idempotent: the re-encoding decodes to an equal message.
/// - What the node computes from a decoded message before trusting it (signer, signing
///   bytes, digests, signature verification with nested messages) never traps.
public enum MessageChecks {
    /// Stand-in keys for 4 replicas and 2 clients; cheap enough to verify at fuzzing speed.
    static let keys = StandInSignatures(seed: 1, replicas: 4, clients: 2)

    public static func check(kind: UInt8, body: [UInt8], message m: Message, limits: MessageLimits = .default) {
        fuzzCheck(m.kind.rawValue == kind, "decoded kind \(m.kind.rawValue) for frame kind \(kind)")
        let again = m.encoded()
        fuzzCheck(again == body, "kind \(kind): accepted body \(fuzzHex(body)) re-encodes to \(fuzzHex(again))")
        do {
            let back = try Message.decode(kind: kind, body: again, limits: limits)
            fuzzCheck(back == m, "kind \(kind): re-decoding the re-encoding gave a different message")
        } catch {
            fuzzFail("kind \(kind): re-encoding \(fuzzHex(again)) does not decode: \(error)")
        }
        // Derived values the replica computes on untrusted messages.
        _ = m.signer
        _ = m.payload.signingBytes(clusterID: 3)
        switch m {
        case .request(let r): _ = r.digest
        case .reply(let r): _ = r.isCoveredBySignature
        case .prePrepare(let pp): _ = pp.digest
        default: break
        }
        // A fresh verifier per input: its verified-request cache must not carry state between
        // inputs (libFuzzer needs each input to behave the same every time it runs).
        let verifier = MessageVerifier(checker: keys, clusterID: 3, replicaCount: 4, clientCount: 2,
                                       verifiedRequestCacheLimit: 8)
        _ = verifier.verify(m)
    }
}
