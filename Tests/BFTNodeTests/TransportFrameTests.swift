import BFTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import BFTNode
@testable import BFTFrameCodec
@testable import BFTTransport
@testable import BFTApplications
@testable import BFTConfig
@testable import BFTClient

private let cluster: UInt32 = 0xC0FF_EE01
private let kinds: Set<UInt8> = [1, 2, 3, 7, 200]
private let rules = FrameRules(
    clusterID: cluster,
    knownKinds: kinds,
    clientKinds: [7],
    limits: WireLimits(maxFrameBodyBytes: 2 * 1024 * 1024, maxClientFrameBodyBytes: 1024)
)

private func headerBytes(
    magic: [UInt8] = FrameHeader.magicBytes,
    version: UInt8 = 1,
    kind: UInt8 = 1,
    flags: UInt16 = 0,
    cluster clusterID: UInt32 = cluster,
    length: UInt32 = 0
) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeBytes(magic)
    b.writeInteger(version)
    b.writeInteger(kind)
    b.writeInteger(flags, endianness: .big)
    b.writeInteger(clusterID, endianness: .big)
    b.writeInteger(length, endianness: .big)
    return b
}

private func makeFrames(count: Int, seed: UInt64) -> [(UInt8, [UInt8])] {
    var rng = SplitMix64(seed: seed)
    let kindList = Array(kinds).sorted()
    return (0..<count).map { _ in
        let kind = kindList.randomElement(using: &rng)!
        let maxLen = kind == 7 ? 1024 : 700
        let len = Int.random(in: 0...maxLen, using: &rng)
        let body = (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return (kind, body)
    }
}

private func encodeStream(_ frames: [(UInt8, [UInt8])]) -> ByteBuffer {
    var out = ByteBuffer()
    for (kind, body) in frames {
        Frame.encode(kind: kind, clusterID: cluster, body: ByteBuffer(bytes: body), into: &out)
    }
    return out
}

/// Feeds `stream` to a fresh decoder channel in the given chunk sizes and returns all frames.
private func decode(_ stream: ByteBuffer, chunks: [Int]) throws -> [(UInt8, [UInt8])] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
    var remaining = stream
    var out: [(UInt8, [UInt8])] = []
    var i = 0
    while remaining.readableBytes > 0 {
        let n = min(chunks[i % chunks.count], remaining.readableBytes)
        i += 1
        try channel.writeInbound(remaining.readSlice(length: n)!)
        while let frame = try channel.readInbound(as: Frame.self) {
            out.append((frame.kind, Array(frame.body.readableBytesView)))
        }
    }
    #expect(try channel.finish().isClean)
    return out
}

private func sameFrames(_ a: [(UInt8, [UInt8])], _ b: [(UInt8, [UInt8])]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
}

@Suite("Transport wire frame")
struct TransportFrameTests {
    @Test func headerGoldenBytes() {
        var buffer = ByteBuffer()
        FrameHeader(kind: 0x03, clusterID: 0x0102_0304, bodyLength: 0x0A0B_0C0D).encode(into: &buffer)
        #expect(
            Array(buffer.readableBytesView) == [
                0x50, 0x42, 0x46, 0x54,  // "PBFT"
                0x01,  // version
                0x03,  // kind
                0x00, 0x00,  // flags
                0x01, 0x02, 0x03, 0x04,  // clusterID
                0x0A, 0x0B, 0x0C, 0x0D,  // bodyLength
            ]
        )
        #expect(buffer.readableBytes == FrameHeader.byteCount)
    }

    @Test func frameEncodingGoldenBytes() {
        let encoded = Frame.encoded(kind: 2, clusterID: 7, body: ByteBuffer(bytes: [0xAA, 0xBB, 0xCC]))
        #expect(
            Array(encoded.readableBytesView) == [
                0x50, 0x42, 0x46, 0x54, 0x01, 0x02, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x03,
                0xAA, 0xBB, 0xCC,
            ]
        )
    }

    @Test func headerRoundTrip() throws {
        var buffer = ByteBuffer()
        let header = FrameHeader(kind: 200, clusterID: cluster, bodyLength: 1234)
        header.encode(into: &buffer)
        #expect(try FrameHeader.decode(buffer, rules: rules) == header)
        // Decoding does not consume.
        #expect(buffer.readableBytes == 16)
        // Every proper prefix of a valid header is "need more bytes", not an error.
        for n in 0..<16 {
            #expect(try FrameHeader.decode(buffer.getSlice(at: 0, length: n)!, rules: rules) == nil)
        }
    }

    @Test(arguments: [
        (headerBytes(magic: [0x50, 0x42, 0x46, 0x55]), FrameError.badMagic),
        (headerBytes(version: 2), FrameError.unsupportedVersion(2)),
        (headerBytes(kind: 9), FrameError.unknownKind(9)),
        (headerBytes(flags: 0x0001), FrameError.nonZeroFlags),
        (headerBytes(cluster: 42), FrameError.wrongCluster(42)),
        (headerBytes(length: 2 * 1024 * 1024 + 1), FrameError.oversized(2 * 1024 * 1024 + 1)),
        (headerBytes(kind: 7, length: 1025), FrameError.oversized(1025)),
    ])
    func headerErrors(bytes: ByteBuffer, expected: FrameError) {
        #expect(throws: expected) { try FrameHeader.decode(bytes, rules: rules) }
    }

    @Test func garbageIsRejectedAtTheFirstWrongByte() throws {
        #expect(throws: FrameError.badMagic) { try FrameHeader.decode(ByteBuffer(bytes: [0x47]), rules: rules) }
        #expect(throws: FrameError.badMagic) {
            try FrameHeader.decode(ByteBuffer(bytes: [0x50, 0x42, 0x00]), rules: rules)
        }
        #expect(throws: FrameError.unsupportedVersion(0)) {
            try FrameHeader.decode(ByteBuffer(bytes: [0x50, 0x42, 0x46, 0x54, 0x00]), rules: rules)
        }
    }

    @Test func clientKindLimitAppliesOnlyToClientKinds() throws {
        #expect(try FrameHeader.decode(headerBytes(kind: 1, length: 1025), rules: rules) != nil)
        #expect(try FrameHeader.decode(headerBytes(kind: 7, length: 1024), rules: rules) != nil)
    }

    @Test func decodesStreamAllAtOnce() throws {
        let frames = makeFrames(count: 300, seed: 1)
        let stream = encodeStream(frames)
        #expect(sameFrames(try decode(stream, chunks: [stream.readableBytes]), frames))
    }

    @Test func decodesStreamOneByteAtATime() throws {
        let frames = makeFrames(count: 30, seed: 2)
        #expect(sameFrames(try decode(encodeStream(frames), chunks: [1]), frames))
    }

    @Test(arguments: [3, 4, 5, 6, 7] as [UInt64])
    func decodesStreamInRandomChunks(seed: UInt64) throws {
        let frames = makeFrames(count: 200, seed: seed)
        var rng = SplitMix64(seed: seed &* 31)
        let chunks = (0..<500).map { _ in Int.random(in: 1...600, using: &rng) }
        #expect(sameFrames(try decode(encodeStream(frames), chunks: chunks), frames))
    }

    @Test func decodesLargeBodyArrivingInPieces() throws {
        let body = (0..<(1024 * 1024 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let frames: [(UInt8, [UInt8])] = [(3, body), (1, []), (2, [9])]
        #expect(sameFrames(try decode(encodeStream(frames), chunks: [65536, 1000, 1]), frames))
    }

    @Test func oversizedHeaderFailsBeforeAnyBodyArrives() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
        #expect(throws: FrameError.oversized(UInt32.max)) {
            try channel.writeInbound(headerBytes(length: UInt32.max))
        }
        _ = try? channel.finish()
    }

    @Test func badHeaderAfterGoodFramesStillDeliversTheGoodOnes() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
        var stream = encodeStream([(1, [1, 2, 3]), (2, [])])
        stream.writeBytes([0xDE, 0xAD, 0xBE, 0xEF])
        #expect(throws: FrameError.badMagic) { try channel.writeInbound(stream) }
        #expect(try channel.readInbound(as: Frame.self)?.kind == 1)
        #expect(try channel.readInbound(as: Frame.self)?.kind == 2)
        #expect(try channel.readInbound(as: Frame.self) == nil)
        _ = try? channel.finish()
    }

    @Test func truncatedFrameAtEOFIsReported() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
        var stream = encodeStream([(1, [1, 2, 3])])
        stream.writeImmutableBuffer(headerBytes(length: 100))
        stream.writeBytes([1, 2, 3, 4])
        try channel.writeInbound(stream)
        #expect(try channel.readInbound(as: Frame.self)?.kind == 1)
        #expect(throws: FrameError.truncated(expected: 116, received: 20)) {
            _ = try channel.finish()
        }
    }

    @Test func emptyStreamAtEOFIsClean() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules)))
        try channel.writeInbound(encodeStream([(1, [1])]))
        #expect(try channel.readInbound(as: Frame.self)?.body.readableBytes == 1)
        #expect(try channel.finish().isClean)
    }

    @Test func heldFramesAreNotDeliveredUntilResumed() throws {
        var allow = 2
        let admission = FrameAdmission {
            if allow > 0 {
                allow -= 1
                return true
            }
            return false
        }
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(rules: rules, admission: admission)))
        try channel.writeInbound(encodeStream(makeFrames(count: 5, seed: 9)))
        var got = 0
        while try channel.readInbound(as: Frame.self) != nil { got += 1 }
        #expect(got == 2)
        #expect(admission.isHeld)
        allow = 10
        admission.resume()
        // An empty read makes ByteToMessageHandler decode what it already buffered.
        try channel.writeInbound(ByteBuffer())
        while try channel.readInbound(as: Frame.self) != nil { got += 1 }
        #expect(got == 5)
        #expect(try channel.finish().isClean)
    }
}
