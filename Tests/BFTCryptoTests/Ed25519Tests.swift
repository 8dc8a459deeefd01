import BFTCrypto
import Foundation
import Testing

/// An RFC 8032 §7.1 test vector (pure Ed25519).
struct RFC8032Vector: Sendable, CustomTestStringConvertible {
    let name: String
    let secret: String
    let publicKey: String
    let message: String
    let signature: String
    var testDescription: String { name }
}

let rfc8032Vectors: [RFC8032Vector] = [
    RFC8032Vector(
        name: "TEST 1",
        secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    ),
    RFC8032Vector(
        name: "TEST 2",
        secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    ),
    RFC8032Vector(
        name: "TEST 3",
        secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
    ),
]

/// A key generated once with `openssl genpkey -algorithm ED25519`, plus what
/// `openssl pkey -pubout` / `-text` printed for it.
let opensslPrivatePEM = """
    -----BEGIN PRIVATE KEY-----
    MC4CAQAwBQYDK2VwBCIEII8TKWE1M9V3BiJSPw/1QbKJauhidzzMMPLBb3imsqss
    -----END PRIVATE KEY-----

    """
let opensslPublicPEM = """
    -----BEGIN PUBLIC KEY-----
    MCowBQYDK2VwAyEA8UVynXQpKU2ge90w9+mDADLpHYQyYkwdrMYOovsccR0=
    -----END PUBLIC KEY-----

    """
let opensslSeedHex = "8f1329613533d5770622523f0ff541b2896ae862773ccc30f2c16f78a6b2ab2c"
let opensslPublicHex = "f145729d7429294da07bdd30f7e9830032e91d8432624c1dacc60ea2fb1c711d"

/// The same key as above, PKCS#8-encrypted with a passphrase (must be rejected, not prompt).
let encryptedPrivatePEM = """
    -----BEGIN ENCRYPTED PRIVATE KEY-----
    MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjSgS5NwQG4aAICCAAw
    DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEPRSAP3oiiV+otC/uQKzlD8EQEFx
    gz2JK4x9jlhdrDDmAvkp51BVjrp3j/QJAjMLdWbec+3RrHZOt3cPgi1UCE6az5L1
    kCcqq8Bp7LE0YlldNGA=
    -----END ENCRYPTED PRIVATE KEY-----

    """

/// P-256 keys (wrong algorithm) made with the openssl CLI.
let p256PrivatePEM = """
    -----BEGIN PRIVATE KEY-----
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1hPuvWTlS/0jJTvS
    rKy3R8jAB8iE3iO346JPUdcOc5ahRANCAAT3Ak6NRNE+I10OORgrEmL/tPFGSYiu
    4pp2x1Ohp0dw737yTpwi0WdzG6m8H/7yzHTgLIv3QdHXxrmeQTexoofo
    -----END PRIVATE KEY-----

    """
let p256PublicPEM = """
    -----BEGIN PUBLIC KEY-----
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpQKi3Y4jf+GJAxe8fncvIovNxw1F
    mbZDQCmRcK4iW4GxzTlyMiAFnJi/mDMCL4lBopvmUN7WPlSK0fyo/kT/XQ==
    -----END PUBLIC KEY-----

    """

private func hex(_ s: String) -> [UInt8] {
    guard let bytes = Hex.decode(s) else { fatalError("bad hex in test: \(s)") }
    return bytes
}

@Suite("Ed25519")
struct Ed25519Tests {
    @Test("RFC 8032 vectors", arguments: rfc8032Vectors)
    func rfc8032(_ v: RFC8032Vector) throws {
        let key = try Ed25519PrivateKey(seed: hex(v.secret))
        #expect(key.seed == hex(v.secret))
        #expect(key.publicKey.rawRepresentation == hex(v.publicKey))

        let message = hex(v.message)
        let signature = key.signature(for: message)
        #expect(signature.count == Ed25519PublicKey.signatureByteCount)
        #expect(Hex.encode(signature) == v.signature)

        // Raw-buffer overload agrees with the array overload.
        let viaBuffer = message.withUnsafeBytes { key.signature(for: $0) }
        #expect(viaBuffer == signature)

        // A public key built from raw bytes verifies the RFC signature.
        let pub = try Ed25519PublicKey(rawRepresentation: hex(v.publicKey))
        #expect(pub == key.publicKey)
        #expect(pub.isValidSignature(hex(v.signature), for: message))
        #expect(message.withUnsafeBytes { pub.isValidSignature(hex(v.signature), for: $0) })
    }

    @Test("empty message via nil-based raw buffer")
    func emptyRawBuffer() throws {
        let v = rfc8032Vectors[0]
        let key = try Ed25519PrivateKey(seed: hex(v.secret))
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let sig = key.signature(for: empty)
        #expect(Hex.encode(sig) == v.signature)
        #expect(key.publicKey.isValidSignature(sig, for: empty))
    }

    @Test("tampered messages and signatures are rejected")
    func tampering() throws {
        let key = try Ed25519PrivateKey.generate()
        let pub = key.publicKey
        let message = Array("pre-prepare view=3 seq=42".utf8)
        let signature = key.signature(for: message)
        #expect(pub.isValidSignature(signature, for: message))

        for i in message.indices {
            var m = message
            m[i] ^= 0x01
            #expect(!pub.isValidSignature(signature, for: m))
        }
        #expect(!pub.isValidSignature(signature, for: message + [0]))
        #expect(!pub.isValidSignature(signature, for: Array(message.dropLast())))
        #expect(!pub.isValidSignature(signature, for: []))

        for i in signature.indices {
            var s = signature
            s[i] ^= 0x80
            #expect(!pub.isValidSignature(s, for: message))
        }

        // Another key must not accept it.
        let other = try Ed25519PrivateKey.generate()
        #expect(!other.publicKey.isValidSignature(signature, for: message))

        // Failed verifications leave no residue: the key still works afterwards.
        #expect(pub.isValidSignature(key.signature(for: message), for: message))
    }

    @Test("wrong-length inputs are rejected without crashing")
    func wrongLengths() throws {
        for n in [0, 1, 31, 33, 64] {
            #expect(throws: CryptoError.invalidKeyLength(n)) {
                try Ed25519PrivateKey(seed: [UInt8](repeating: 7, count: n))
            }
            #expect(throws: CryptoError.invalidKeyLength(n)) {
                try Ed25519PublicKey(rawRepresentation: [UInt8](repeating: 7, count: n))
            }
        }
        let key = try Ed25519PrivateKey.generate()
        let message: [UInt8] = [1, 2, 3]
        let good = key.signature(for: message)
        for n in [0, 1, 32, 63, 65, 128] {
            let sig = [UInt8](repeating: 0xAB, count: n)
            #expect(!key.publicKey.isValidSignature(sig, for: message))
        }
        #expect(!key.publicKey.isValidSignature(Array(good.prefix(63)), for: message))
        #expect(!key.publicKey.isValidSignature(good + [0], for: message))

        // Garbage 32-byte public keys (possibly not valid curve points) just fail to verify.
        for fill: UInt8 in [0x00, 0xFF, 0x5A] {
            let bogus = try Ed25519PublicKey(rawRepresentation: [UInt8](repeating: fill, count: 32))
            #expect(!bogus.isValidSignature(good, for: message))
            #expect(!bogus.isValidSignature([UInt8](repeating: 0, count: 64), for: message))
        }
    }

    @Test("generated keys are distinct and usable")
    func generate() throws {
        let a = try Ed25519PrivateKey.generate()
        let b = try Ed25519PrivateKey.generate()
        #expect(a.seed != b.seed)
        #expect(a.publicKey != b.publicKey)
        let msg = Array("hello".utf8)
        #expect(a.publicKey.isValidSignature(a.signature(for: msg), for: msg))
        // Deterministic signatures (RFC 8032): same key + message => same bytes.
        #expect(a.signature(for: msg) == a.signature(for: msg))
        // Re-creating from the seed gives the same key.
        let a2 = try Ed25519PrivateKey(seed: a.seed)
        #expect(a2.publicKey == a.publicKey)
        #expect(a2.signature(for: msg) == a.signature(for: msg))
    }

    @Test("public keys are Hashable by raw bytes")
    func publicKeyHashable() throws {
        let raw = hex(rfc8032Vectors[1].publicKey)
        let p1 = try Ed25519PublicKey(rawRepresentation: raw)
        let p2 = try Ed25519PublicKey(rawRepresentation: raw)
        #expect(p1 == p2)
        #expect(p1.hashValue == p2.hashValue)
        let dict: [Ed25519PublicKey: Int] = [p1: 1]
        #expect(dict[p2] == 1)
        #expect(Set([p1, p2]).count == 1)
    }
}

@Suite("PEM")
struct PEMTests {
    @Test("private/public PEM round trip")
    func roundTrip() throws {
        let key = try Ed25519PrivateKey.generate()
        let pem = key.pemRepresentation()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        #expect(pem.hasSuffix("-----END PRIVATE KEY-----\n"))
        let loaded = try Ed25519PrivateKey(pem: pem)
        #expect(loaded.seed == key.seed)
        #expect(loaded.publicKey == key.publicKey)
        #expect(loaded.pemRepresentation() == pem)

        let pubPEM = key.publicKey.pemRepresentation()
        #expect(pubPEM.hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        #expect(pubPEM.hasSuffix("-----END PUBLIC KEY-----\n"))
        let pub = try Ed25519PublicKey(pem: pubPEM)
        #expect(pub == key.publicKey)
        #expect(pub.pemRepresentation() == pubPEM)
    }

    @Test("key written once by `openssl genpkey -algorithm ED25519` loads")
    func embeddedOpenSSLKey() throws {
        let key = try Ed25519PrivateKey(pem: opensslPrivatePEM)
        #expect(Hex.encode(key.seed) == opensslSeedHex)
        #expect(Hex.encode(key.publicKey.rawRepresentation) == opensslPublicHex)
        // We write exactly what openssl writes.
        #expect(key.pemRepresentation() == opensslPrivatePEM)
        #expect(key.publicKey.pemRepresentation() == opensslPublicPEM)
        let pub = try Ed25519PublicKey(pem: opensslPublicPEM)
        #expect(pub == key.publicKey)
        // Leading/trailing text around the PEM block is tolerated (as OpenSSL does).
        _ = try Ed25519PrivateKey(pem: "comment line\n" + opensslPrivatePEM)
    }

    @Test("bad PEM input is rejected with the right error")
    func badPEM() throws {
        func isInvalidPEM(_ body: () throws -> Void) -> Bool {
            do { try body() } catch let e as CryptoError {
                if case .invalidPEM = e { return true }
                return false
            } catch { return false }
            return false
        }
        #expect(isInvalidPEM { _ = try Ed25519PrivateKey(pem: "") })
        #expect(isInvalidPEM { _ = try Ed25519PrivateKey(pem: "not a pem") })
        #expect(isInvalidPEM { _ = try Ed25519PrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") })
        #expect(isInvalidPEM { _ = try Ed25519PrivateKey(pem: opensslPublicPEM) })
        #expect(isInvalidPEM { _ = try Ed25519PrivateKey(pem: encryptedPrivatePEM) })
        #expect(isInvalidPEM { _ = try Ed25519PublicKey(pem: "") })
        #expect(isInvalidPEM { _ = try Ed25519PublicKey(pem: opensslPrivatePEM) })
        #expect(isInvalidPEM { _ = try Ed25519PublicKey(pem: String(opensslPublicPEM.dropLast(30))) })

        #expect(throws: CryptoError.wrongKeyType) { try Ed25519PrivateKey(pem: p256PrivatePEM) }
        #expect(throws: CryptoError.wrongKeyType) { try Ed25519PublicKey(pem: p256PublicPEM) }

        // Everything still works after the failures (no stale OpenSSL errors).
        let key = try Ed25519PrivateKey(pem: opensslPrivatePEM)
        #expect(Hex.encode(key.publicKey.rawRepresentation) == opensslPublicHex)
    }

    @Test("CryptoError descriptions")
    func errorDescriptions() {
        #expect(CryptoError.invalidKeyLength(3).description.contains("3"))
        #expect(CryptoError.invalidSignatureLength(63).description.contains("63"))
        #expect(CryptoError.invalidPEM("x").description.contains("x"))
        #expect(CryptoError.wrongKeyType.description.contains("ED25519"))
        #expect(CryptoError.openssl("boom").description.contains("boom"))
    }
}

// MARK: - Interop with the openssl CLI

private let opensslPath = "/usr/bin/openssl"

@discardableResult
private func runOpenSSL(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: opensslPath)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("openssl CLI interop", .enabled(if: FileManager.default.isExecutableFile(atPath: opensslPath),
                                        "/usr/bin/openssl not installed"))
struct OpenSSLInteropTests {
    @Test("fresh `openssl genpkey -algorithm ED25519` key loads; signatures interoperate")
    func genpkey() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("bftcrypto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("key.pem").path
        let pubPath = dir.appendingPathComponent("pub.pem").path
        let msgPath = dir.appendingPathComponent("msg.bin").path
        let sigPath = dir.appendingPathComponent("sig.bin").path
        let sig2Path = dir.appendingPathComponent("sig2.bin").path

        #expect(try runOpenSSL(["genpkey", "-algorithm", "ED25519", "-out", keyPath]).status == 0)
        #expect(try runOpenSSL(["pkey", "-in", keyPath, "-pubout", "-out", pubPath]).status == 0)

        let keyPEM = try String(contentsOfFile: keyPath, encoding: .utf8)
        let pubPEM = try String(contentsOfFile: pubPath, encoding: .utf8)
        let key = try Ed25519PrivateKey(pem: keyPEM)
        let pub = try Ed25519PublicKey(pem: pubPEM)
        #expect(key.publicKey == pub)
        #expect(key.pemRepresentation() == keyPEM)
        #expect(pub.pemRepresentation() == pubPEM)

        // We sign, openssl verifies.
        let message = Array("interop message \(UUID().uuidString)".utf8)
        try Data(message).write(to: URL(fileURLWithPath: msgPath))
        try Data(key.signature(for: message)).write(to: URL(fileURLWithPath: sigPath))
        let verify = try runOpenSSL(["pkeyutl", "-verify", "-pubin", "-inkey", pubPath,
                                     "-rawin", "-in", msgPath, "-sigfile", sigPath])
        #expect(verify.status == 0)

        // openssl signs, we verify; Ed25519 is deterministic so the bytes match too.
        #expect(try runOpenSSL(["pkeyutl", "-sign", "-inkey", keyPath, "-rawin",
                                "-in", msgPath, "-out", sig2Path]).status == 0)
        let theirs = [UInt8](try Data(contentsOf: URL(fileURLWithPath: sig2Path)))
        #expect(theirs.count == 64)
        #expect(pub.isValidSignature(theirs, for: message))
        #expect(theirs == key.signature(for: message))
    }

    @Test("our PEM is readable by openssl")
    func opensslReadsOurPEM() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("bftcrypto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("key.pem").path
        let key = try Ed25519PrivateKey.generate()
        try key.pemRepresentation().write(toFile: keyPath, atomically: true, encoding: .utf8)
        let out = try runOpenSSL(["pkey", "-in", keyPath, "-pubout"])
        #expect(out.status == 0)
        #expect(out.output == key.publicKey.pemRepresentation())
    }
}
