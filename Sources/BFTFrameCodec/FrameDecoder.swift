import NIOCore

/// Decides, frame by frame, whether the decoder may hand another frame to the consumer.
///
/// Why it sits inside the decoder: a single socket read can contain thousands of small
/// frames. Pausing only socket reads would still let all of them through; asking before each
/// frame makes the inbound limits exact. Frames not admitted stay as raw bytes in the
/// decoder's cumulation buffer (bounded: reads are paused meanwhile) until `resume()`.
///
/// Event-loop bound: used only from the channel's pipeline.
public final class FrameAdmission {
    /// `true` once a frame was refused; stays so until `resume()`. While held, the
    /// connection handler also swallows `read()` so the socket is not drained further.
    public private(set) var isHeld = false
    private let admit: () -> Bool

    public init(admit: @escaping () -> Bool) {
        self.admit = admit
    }

    public func tryAdmit() -> Bool {
        if self.isHeld { return false }
        if self.admit() { return true }
        self.isHeld = true
        return false
    }

    public func resume() {
        self.isHeld = false
    }
}

/// Which frame kinds a connection may receive right now, and how large, when that changes during
/// the connection's life: before its session is authenticated only small handshake frames; after,
/// sealed records up to what the authenticated principal may send. Checked on each header, before
/// any body byte is buffered, so a stranger cannot make us buffer a large frame.
///
/// Event-loop bound: used only from the channel's pipeline.
public final class FrameGate {
    /// Kind → largest body accepted; a kind not listed is refused.
    public var maxBodyBytes: [UInt8: Int]

    public init(maxBodyBytes: [UInt8: Int]) { self.maxBodyBytes = maxBodyBytes }

    func check(_ header: FrameHeader) throws(FrameError) {
        guard let limit = maxBodyBytes[header.kind] else { throw .unknownKind(header.kind) }
        if Int(header.bodyLength) > limit { throw .oversized(header.bodyLength) }
    }
}

/// Turns a byte stream into `Frame`s.
///
/// The header is validated as its bytes arrive and *before* any body bytes are waited for:
/// an oversized length, wrong magic/version/flags/cluster or an unknown kind throws a
/// `FrameError` immediately, so a hostile peer cannot make us buffer a body we would reject.
/// Any error is fatal for the connection (the connection handler closes it): the stream
/// cannot be resynchronised after a bad header.
///
/// Bodies larger than 64 KiB are slices of the cumulation buffer (no copy); smaller ones are
/// copied so they do not pin a large receive buffer.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    static let copyThreshold = 64 * 1024
    static let allocator = ByteBufferAllocator()

    public let rules: FrameRules
    let admission: FrameAdmission?
    let gate: FrameGate?
    /// The validated header of the frame whose body is still arriving, so large bodies that
    /// arrive in many reads are not re-validated each time.
    private var pendingHeader: FrameHeader?

    public init(rules: FrameRules) {
        self.init(rules: rules, admission: nil)
    }

    public init(clusterID: UInt32, knownKinds: Set<UInt8>, clientKinds: Set<UInt8> = [], limits: WireLimits = .default) {
        self.init(rules: FrameRules(clusterID: clusterID, knownKinds: knownKinds, clientKinds: clientKinds, limits: limits))
    }

    public init(rules: FrameRules, admission: FrameAdmission?, gate: FrameGate? = nil) {
        self.rules = rules
        self.admission = admission
        self.gate = gate
        self.pendingHeader = nil
    }

    /// Parses one frame from `buffer` if it is complete and admitted; `nil` otherwise.
    public mutating func nextFrame(from buffer: inout ByteBuffer) throws(FrameError) -> Frame? {
        let header: FrameHeader
        if let pending = self.pendingHeader {
            header = pending
        } else {
            guard let parsed = try FrameHeader.decode(buffer, rules: self.rules) else { return nil }
            try self.gate?.check(parsed)
            header = parsed
            self.pendingHeader = parsed
        }
        let bodyLength = Int(header.bodyLength)
        guard buffer.readableBytes >= FrameHeader.byteCount + bodyLength else { return nil }
        if let admission = self.admission, !admission.tryAdmit() { return nil }
        buffer.moveReaderIndex(forwardBy: FrameHeader.byteCount)
        var body = buffer.readSlice(length: bodyLength)!
        if bodyLength <= FrameDecoder.copyThreshold {
            // A slice keeps the whole receive buffer alive. For small bodies that could pin
            // many times their size while the consumer holds them (up to
            // `maxInboundQueuedFrames` of them), so small bodies get their own storage.
            var copy = FrameDecoder.allocator.buffer(capacity: bodyLength)
            copy.writeBuffer(&body)
            body = copy
        }
        self.pendingHeader = nil
        return Frame(kind: header.kind, body: body)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try self.nextFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while let frame = try self.nextFrame(from: &buffer) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        // Leftover bytes at EOF are a truncated frame, unless we deliberately held complete
        // frames back for backpressure (those are dropped with the connection; the handler
        // counts them).
        if seenEOF, buffer.readableBytes > 0, !(self.admission?.isHeld ?? false) {
            let expected = FrameHeader.byteCount + Int(self.pendingHeader?.bodyLength ?? 0)
            let received = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: received)
            throw FrameError.truncated(expected: max(expected, received + 1), received: received)
        }
        return .needMoreData
    }
}
