import BFTCore
import BFTSession
import Testing

@testable import BFTFrameCodec
@testable import BFTTransport

/// Drop and close reasons end up side by side as values of one metric label
/// (`bft_messages_dropped_total{reason}`) and in one status document, so every layer spells
/// them the same way: lower-case snake_case.
@Suite("Reason labels")
struct ReasonLabelTests {
    static func isSnakeCase(_ label: String) -> Bool {
        guard let first = label.unicodeScalars.first, ("a"..."z").contains(first), !label.hasSuffix("_"),
              !label.contains("__") else { return false }
        return label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    static let frameErrors: [FrameError] = [
        .badMagic, .unsupportedVersion(2), .nonZeroFlags, .wrongCluster(1), .oversized(1), .unknownKind(9),
        .truncated(expected: 2, received: 1),
    ]

    static let closeReasons: [ConnectionCloseReason] = frameErrors.map { .frame($0) } + [
        .session(SessionError.handshakeDecryptFailed.reason), .session("handshake_timeout"), .bufferLimit, .io,
        .penalties, .tooManyConnections, .clientOutboundQueueFull, .disconnect("operator request"),
    ]

    @Test("the core's, the session's and the transport's reasons are all snake_case")
    func everyLabelIsSnakeCase() {
        let labels = DropReason.allCases.map(\.rawValue) + SessionError.allCases.map(\.reason)
            + TransportDropReason.allCases.map(\.label) + Self.closeReasons.map(\.label)
        for label in labels {
            #expect(Self.isSnakeCase(label), "\(label)")
        }
    }

    @Test("close labels do not depend on values a peer chose, and a disconnect keeps only the first word")
    func closeLabelsAreLowCardinality() {
        #expect(ConnectionCloseReason.frame(.wrongCluster(1)).label == ConnectionCloseReason.frame(.wrongCluster(2)).label)
        #expect(ConnectionCloseReason.frame(.oversized(7)).label == "oversized")
        #expect(ConnectionCloseReason.session("handshake_timeout").label == "session_handshake_timeout")
        #expect(ConnectionCloseReason.disconnect("test (operator request)").label == "disconnect_test")
        #expect(Set(Self.closeReasons.map(\.label)).count == Self.closeReasons.count)
    }
}
