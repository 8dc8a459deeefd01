import BFTCore
import FuzzSupport

/// The client request parser: the whole input is the body of a REQUEST (kind 1), the one
/// message any configured client (the least trusted party) can send a replica.
///
/// Property: decoding either throws `DecodeError` or gives a request whose encoding is the
/// input (canonical), both through `Request.decode` and through `Message.decode`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = fuzzInput(data, size)
    let request: Request
    do {
        request = try Request.decode(body, limits: .default)
    } catch {
        do {
            _ = try Message.decode(kind: MessageKind.request.rawValue, body: body, limits: .default)
            fuzzFail("Request.decode threw \(error) but Message.decode accepted \(fuzzHex(body))")
        } catch {}
        return 0
    }
    fuzzCheck(request.signature.count == signatureByteCount, "signature of \(request.signature.count) bytes")
    fuzzCheck(request.operation.count <= MessageLimits.default.maxOperationBytes, "operation over the limit")
    fuzzCheck(request.encoded == body, "request \(fuzzHex(body)) re-encodes to \(fuzzHex(request.encoded))")
    MessageChecks.check(kind: MessageKind.request.rawValue, body: body, message: .request(request))
    return 0
}
