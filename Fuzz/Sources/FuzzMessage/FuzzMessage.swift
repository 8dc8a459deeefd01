import BFTCore
import FuzzSupport

/// Every message decoder: the first input byte is the message kind (as in the frame header),
/// the rest is the body.
///
/// Property: `Message.decode` either throws `DecodeError` or returns a message whose
/// `encoded()` is exactly the body (canonical encoding), and which re-decodes to itself.
/// Unknown kinds must throw `.unknownKind`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let kind = data[0]
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let message: Message
    do {
        message = try Message.decode(kind: kind, body: body, limits: .default)
    } catch {
        if MessageKind(rawValue: kind) == nil {
            fuzzCheck(error == .unknownKind(kind), "kind \(kind) is unknown but decode threw \(error)")
        }
        return 0
    }
    MessageChecks.check(kind: kind, body: body, message: message)
    return 0
}
