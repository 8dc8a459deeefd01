import BFTCore
import BFTFrameCodec
import FuzzSupport
import NIOCore
import NIOEmbedded

/// The frame decoder, as the node runs it: a `FrameDecoder` inside a `ByteToMessageHandler`
/// in a (deterministic, in-memory) `EmbeddedChannel`.
///
/// Input: byte 0 chooses how the stream is cut into reads (0: one read; 1: byte by byte;
/// otherwise reads of random sizes up to 4...512 bytes from a PRNG seeded with that byte),
/// bytes 1... are the TCP stream. The stream is also parsed by `Reference`, a plain re-statement of the wire format,
/// and the two must agree:
///
/// - the same frames, in order, each emitted as soon as its last byte has been read, and
///   each re-encoding (header + body) to exactly the bytes it was decoded from;
/// - a bad header is rejected with the same `FrameError`, in the read that delivered the
///   first byte that makes it bad (never later: no buffering of a body we would refuse, and
///   never earlier), and nothing after it is decoded;
/// - at EOF a partial frame is `.truncated(expected:received:)` with the right counts, and a
///   stream ending on a frame boundary closes cleanly.
///
/// Bodies are not decoded as messages here (`FuzzMessage` does that 20× faster), so the
/// coverage feedback stays about framing. Limits are small (1 MiB, 4 KiB for the client kind) so no input can force a big allocation.
let rules = FrameRules(
    clusterID: 3,
    knownKinds: Set(MessageKind.allCases.map(\.rawValue)),
    clientKinds: [MessageKind.request.rawValue],
    limits: WireLimits(maxFrameBodyBytes: 1024 * 1024, maxClientFrameBodyBytes: 4096)
)

/// Independent parse of a complete stream.
struct Reference {
    struct Span: Equatable { var kind: UInt8; var start: Int; var end: Int }
    var frames: [Span] = []
    /// The error the stream must end with, and how many stream bytes must have been read for
    /// the decoder to see it (`nil`: only at EOF).
    var error: FrameError? = nil
    var errorDetectableAt: Int? = nil

    init(_ s: [UInt8]) {
        var h = 0
        while h < s.count {
            let a = min(FrameHeader.byteCount, s.count - h)
            func byte(_ i: Int) -> UInt8 { s[h + i] }
            func be32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(byte(i + $1)) } }
            func fail(_ e: FrameError, _ bytesNeeded: Int) { error = e; errorDetectableAt = h + bytesNeeded }
            for i in 0..<min(4, a) where byte(i) != FrameHeader.magicBytes[i] { fail(.badMagic, i + 1); return }
            if a >= 5, byte(4) != 1 { fail(.unsupportedVersion(byte(4)), 5); return }
            if a >= 6, !(1...13).contains(byte(5)) { fail(.unknownKind(byte(5)), 6); return }
            for i in 6..<max(6, min(8, a)) where byte(i) != 0 { fail(.nonZeroFlags, i + 1); return }
            if a >= 12, be32(8) != 3 { fail(.wrongCluster(be32(8)), 12); return }
            guard a == 16 else { error = .truncated(expected: 16, received: a); return }
            let length = be32(12)
            let limit: UInt32 = byte(5) == 1 ? 4096 : 1024 * 1024
            if length > limit { fail(.oversized(length), 16); return }
            let end = h + 16 + Int(length)
            guard end <= s.count else { error = .truncated(expected: 16 + Int(length), received: s.count - h); return }
            frames.append(Span(kind: byte(5), start: h, end: end))
            h = end
        }
    }
}

/// Read sizes for the stream, chosen by `selector`.
func chunkSizes(selector: UInt8, total: Int) -> [Int] {
    switch selector {
    case 0: return total == 0 ? [] : [total]
    case 1: return Array(repeating: 1, count: total)
    default:
        var rng = FuzzRandom(seed: UInt64(selector))
        let maxChunk = 4 << (Int(selector) % 8)  // 4 ... 512
        var out: [Int] = []
        var left = total
        while left > 0 {
            let n = min(left, Int.random(in: 1...maxChunk, using: &rng))
            out.append(n)
            left -= n
        }
        return out
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let stream = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let reference = Reference(stream)

    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
    var input = ByteBuffer(bytes: stream)
    var fed = 0
    var decoded = 0
    var thrown: (any Error)? = nil

    /// Checks the frames the decoder has emitted so far against the reference.
    func drain() {
        while true {
            let frame: Frame?
            do { frame = try channel.readInbound(as: Frame.self) } catch { fuzzFail("readInbound threw \(error)") }
            guard let frame else { return }
            fuzzCheck(decoded < reference.frames.count, "decoder emitted frame #\(decoded) but the reference has \(reference.frames.count)")
            let span = reference.frames[decoded]
            fuzzCheck(span.end <= fed, "frame #\(decoded) ending at \(span.end) emitted after only \(fed) bytes")
            fuzzCheck(frame.kind == span.kind, "frame #\(decoded): kind \(frame.kind), reference \(span.kind)")
            let reencoded = Frame.encoded(kind: frame.kind, clusterID: rules.clusterID, body: frame.body)
            let consumed = stream[span.start..<span.end]
            fuzzCheck(Array(reencoded.readableBytesView) == Array(consumed),
                      "frame #\(decoded) re-encodes to \(fuzzHex(reencoded.readableBytesView)), consumed \(fuzzHex(consumed))")
            decoded += 1
        }
    }

    for n in chunkSizes(selector: selector, total: stream.count) {
        let chunk = input.readSlice(length: n)!
        fed += n
        do {
            try channel.writeInbound(chunk)
        } catch {
            thrown = error
        }
        drain()
        // Every frame complete within the bytes read so far has been emitted (no admission
        // control is installed, so the decoder must not hold any back).
        let complete = reference.frames.prefix { $0.end <= fed }.count
        fuzzCheck(decoded == complete, "after \(fed) bytes: \(decoded) frames emitted, \(complete) complete")
        if let at = reference.errorDetectableAt, fed >= at {
            fuzzCheck(thrown != nil, "\(reference.error!) detectable after \(at) bytes, not thrown after \(fed)")
        } else {
            fuzzCheck(thrown == nil, "threw \(thrown!) after \(fed) bytes, reference: \(String(describing: reference.error))")
        }
        if thrown != nil { break }
    }

    if let thrown {
        fuzzCheck((thrown as? FrameError) == reference.error,
                  "decoder threw \(thrown), reference \(String(describing: reference.error))")
        _ = try? channel.finish()
    } else {
        // EOF: the decoder sees the end of the stream.
        do {
            _ = try channel.finish()
            drain()
            fuzzCheck(reference.error == nil, "clean EOF, reference expects \(reference.error!)")
        } catch {
            drain()
            fuzzCheck((error as? FrameError) == reference.error,
                      "at EOF decoder threw \(error), reference \(String(describing: reference.error))")
        }
    }
    fuzzCheck(decoded == reference.frames.count, "decoded \(decoded) frames, reference \(reference.frames.count)")
    return 0
}
