import BFTCore
import BFTApplications
import FuzzSupport

/// The key-value application's command parser and snapshot codec.
///
/// The input is split at newlines into commands (so seeds and dictionary entries stay
/// readable text; values containing a newline are the price). Each command is executed by
/// two stores, one with the node's default limits and one with tiny limits so the "too
/// long", "too many keys" and "store full" paths are reached by short inputs. Properties:
///
/// - executing arbitrary bytes never traps, and the limits always hold;
/// - a `SET` answered `OK` is visible to the next `GET` exactly as sent, a `DEL` answered `1`
///   removes the key;
/// - `snapshot()` → `restore(from:)` into a fresh store gives the same snapshot, count and
///   byte total;
/// - the whole input as a snapshot: `restore` either refuses it and leaves the store
///   unchanged, or accepts it and `snapshot()` then gives back exactly the input (the
///   snapshot format is canonical, which checkpoint digests rely on).
let tinyLimits: KVApplication.Limits = {
    var l = KVApplication.Limits()
    l.maxKeys = 8
    l.maxKeyBytes = 8
    l.maxValueBytes = 16
    l.maxTotalBytes = 64
    return l
}()

/// The KV store ignores its context; any valid one will do.
let context = ExecutionContext(client: 0, timestamp: 1, seq: 1, index: 1)

func checkInvariants(_ app: KVApplication) {
    fuzzCheck(app.count <= app.limits.maxKeys, "\(app.count) keys, limit \(app.limits.maxKeys)")
    fuzzCheck(app.totalBytes >= 0 && app.totalBytes <= app.limits.maxTotalBytes,
              "\(app.totalBytes) bytes, limit \(app.limits.maxTotalBytes)")
}

func checkSnapshotRoundTrip(_ app: KVApplication) {
    let snap = app.snapshot()
    let copy = KVApplication(limits: app.limits)
    do { try copy.restore(from: snap) } catch { fuzzFail("own snapshot \(fuzzHex(snap)) refused: \(error)") }
    fuzzCheck(copy.snapshot() == snap, "snapshot changed by restore")
    fuzzCheck(copy.count == app.count && copy.totalBytes == app.totalBytes,
              "restored \(copy.count) keys/\(copy.totalBytes) bytes, had \(app.count)/\(app.totalBytes)")
}

/// Restores the raw input into `app` (already holding some state).
func checkRestoreArbitrary(_ app: KVApplication, _ bytes: [UInt8]) {
    let before = app.snapshot()
    let beforeCount = app.count, beforeTotal = app.totalBytes
    do {
        try app.restore(from: bytes)
    } catch {
        fuzzCheck(error is KVSnapshotError, "restore threw \(type(of: error)), not KVSnapshotError")
        fuzzCheck(app.snapshot() == before && app.count == beforeCount && app.totalBytes == beforeTotal,
                  "a refused snapshot changed the store")
        return
    }
    fuzzCheck(app.snapshot() == bytes, "accepted snapshot \(fuzzHex(bytes)) re-encodes to \(fuzzHex(app.snapshot()))")
    checkInvariants(app)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    let apps = [KVApplication(), KVApplication(limits: tinyLimits)]
    for command in input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        let op = Array(command)
        for app in apps {
            let reply = app.execute(op, context: context)
            checkInvariants(app)
            // Commands whose effect is predictable from the text alone.
            let parts = op.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].count == 3, parts[0].allSatisfy({ $0 < 0x80 }), !parts[1].isEmpty else { continue }
            let verb = String(decoding: parts[0], as: UTF8.self).uppercased()
            let key = Array(parts[1])
            if verb == "SET", parts.count == 3, reply == Array("OK".utf8) {
                fuzzCheck(app.value(for: key) == Array(parts[2]), "SET \(fuzzHex(key)) answered OK but the value differs")
            } else if verb == "DEL", parts.count == 2, reply == Array("1".utf8) {
                fuzzCheck(app.value(for: key) == nil, "DEL \(fuzzHex(key)) answered 1 but the key is still there")
            } else if verb == "GET", parts.count == 2, let value = app.value(for: key) {
                fuzzCheck(reply == value, "GET \(fuzzHex(key)) returned \(fuzzHex(reply)), stored \(fuzzHex(value))")
            }
        }
    }
    for app in apps {
        checkSnapshotRoundTrip(app)
        checkRestoreArbitrary(app, input)
    }
    return 0
}
