import BFTCrypto
import Testing

private func hex(_ s: String) -> [UInt8] { Hex.decode(s)! }

/// Known-answer tests for the session primitives (X25519, ChaCha20-Poly1305,
/// HMAC-SHA256, HKDF), with the vectors copied from the RFCs they cite.
@Suite("Session primitives")
struct SessionPrimitiveTests {
    // MARK: X25519 (RFC 7748)

    @Test("RFC 7748 §5.2 test vectors: scalar × u-coordinate")
    func x25519FunctionVectors() throws {
        let vectors: [(scalar: String, u: String, out: String)] = [
            ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
             "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
             "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
            ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
             "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
             "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
        ]
        for v in vectors {
            let key = try X25519.PrivateKey(rawRepresentation: hex(v.scalar))
            let shared = try key.sharedSecret(with: X25519.PublicKey(rawRepresentation: hex(v.u)))
            #expect(Hex.encode(shared) == v.out)
        }
    }

    @Test("RFC 7748 §5.2 iterated test: 1 and 1,000 iterations")
    func x25519Iterated() throws {
        var k = [UInt8](repeating: 0, count: 32); k[0] = 9
        var u = k
        for i in 1...1000 {
            let r = try X25519.PrivateKey(rawRepresentation: k).sharedSecret(with: X25519.PublicKey(rawRepresentation: u))
            u = k
            k = r
            if i == 1 { #expect(Hex.encode(k) == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079") }
        }
        #expect(Hex.encode(k) == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    }

    @Test("RFC 7748 §6.1 Diffie-Hellman: Alice's and Bob's public keys and shared secret")
    func x25519AliceBob() throws {
        let alice = try X25519.PrivateKey(rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519.PrivateKey(rawRepresentation: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(Hex.encode(alice.publicKey.rawRepresentation) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(Hex.encode(bob.publicKey.rawRepresentation) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let k1 = try alice.sharedSecret(with: bob.publicKey)
        let k2 = try bob.sharedSecret(with: alice.publicKey)
        #expect(Hex.encode(k1) == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(k1 == k2)
    }

    @Test("low-order peer points give the all-zero secret and are refused")
    func x25519LowOrder() throws {
        let key = try X25519.PrivateKey(rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let lowOrder = [
            "0000000000000000000000000000000000000000000000000000000000000000", // 0
            "0100000000000000000000000000000000000000000000000000000000000000", // 1
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1
        ]
        for point in lowOrder {
            #expect(throws: CryptoError.lowOrderPoint) {
                try key.sharedSecret(with: X25519.PublicKey(rawRepresentation: hex(point)))
            }
        }
    }

    @Test("X25519 lengths are checked; injected generators give reproducible keys")
    func x25519LengthsAndGenerator() throws {
        for n in [0, 31, 33] {
            #expect(throws: CryptoError.invalidKeyLength(n)) { try X25519.PrivateKey(rawRepresentation: [UInt8](repeating: 1, count: n)) }
            #expect(throws: CryptoError.invalidKeyLength(n)) { try X25519.PublicKey(rawRepresentation: [UInt8](repeating: 1, count: n)) }
        }
        var g1 = SplitMix64(seed: 7), g2 = SplitMix64(seed: 7), g3 = SplitMix64(seed: 8)
        let a = try X25519.PrivateKey(using: &g1), b = try X25519.PrivateKey(using: &g2), c = try X25519.PrivateKey(using: &g3)
        #expect(a.publicKey == b.publicKey)
        #expect(a.publicKey != c.publicKey)
        let r1 = try X25519.PrivateKey.generate(), r2 = try X25519.PrivateKey.generate()
        #expect(try r1.sharedSecret(with: r2.publicKey) == r2.sharedSecret(with: r1.publicKey))
    }

    // MARK: ChaCha20-Poly1305 (RFC 8439)

    static let aeadKey = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
    static let aeadNonce = hex("070000004041424344454647")
    static let aeadAD = hex("50515253c0c1c2c3c4c5c6c7")
    static let aeadPlaintext = Array("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".utf8)
    static let aeadCiphertext = hex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
        + "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        + "3ff4def08e4b7a9de576d26586cec64b6116")
    static let aeadTag = hex("1ae10b594f09e26a7e902ecbd0600691")

    @Test("RFC 8439 §2.8.2 AEAD vector: seal and open")
    func aeadVector() throws {
        let aead = try ChaCha20Poly1305(key: Self.aeadKey)
        let sealed = try aead.seal(Self.aeadPlaintext, nonce: Self.aeadNonce, associatedData: Self.aeadAD)
        #expect(sealed == Self.aeadCiphertext + Self.aeadTag)
        let opened = try aead.open(sealed, nonce: Self.aeadNonce, associatedData: Self.aeadAD)
        #expect(opened == Self.aeadPlaintext)
        // With a prefix: prefix ‖ the same ciphertext ‖ tag, in one buffer.
        let prefix: [UInt8] = [0xde, 0xad, 0xbe, 0xef]
        let prefixed = try Self.aeadPlaintext.withUnsafeBytes { p in
            try Self.aeadAD.withUnsafeBytes { a in
                try prefix.withUnsafeBytes { x in try aead.seal(p, nonce: Self.aeadNonce, associatedData: a, prefix: x) }
            }
        }
        #expect(prefixed == prefix + sealed)
        // The same keyed context, reused: sealing again after an open gives the same bytes.
        #expect(try aead.seal(Self.aeadPlaintext, nonce: Self.aeadNonce, associatedData: Self.aeadAD) == sealed)
    }

    @Test("AEAD open fails on any single-bit change of ciphertext, tag, nonce or AD")
    func aeadTamper() throws {
        let aead = try ChaCha20Poly1305(key: Self.aeadKey)
        let sealed = Self.aeadCiphertext + Self.aeadTag
        for i in 0..<sealed.count {
            var bad = sealed
            bad[i] ^= UInt8(1 << (i % 8))
            #expect(throws: CryptoError.authenticationFailure) { try aead.open(bad, nonce: Self.aeadNonce, associatedData: Self.aeadAD) }
        }
        var nonce = Self.aeadNonce; nonce[11] ^= 1
        #expect(throws: CryptoError.authenticationFailure) { try aead.open(sealed, nonce: nonce, associatedData: Self.aeadAD) }
        var ad = Self.aeadAD; ad[0] ^= 0x80
        #expect(throws: CryptoError.authenticationFailure) { try aead.open(sealed, nonce: Self.aeadNonce, associatedData: ad) }
        #expect(throws: CryptoError.authenticationFailure) { try aead.open(sealed, nonce: Self.aeadNonce, associatedData: []) }
        var key = Self.aeadKey; key[31] ^= 1
        #expect(throws: CryptoError.authenticationFailure) { try ChaCha20Poly1305(key: key).open(sealed, nonce: Self.aeadNonce, associatedData: Self.aeadAD) }
        // Truncation removes tag bytes: fails, and a too-short input is a length error.
        #expect(throws: CryptoError.authenticationFailure) { try aead.open(Array(sealed.dropLast()), nonce: Self.aeadNonce, associatedData: Self.aeadAD) }
        #expect(throws: CryptoError.invalidCiphertextLength(15)) { try aead.open(Array(Self.aeadTag.dropLast()), nonce: Self.aeadNonce) }
        // After failures the context still works (state is re-initialised per call).
        #expect(try aead.open(sealed, nonce: Self.aeadNonce, associatedData: Self.aeadAD) == Self.aeadPlaintext)
    }

    @Test("AEAD lengths are checked; empty plaintext and AD work")
    func aeadLengths() throws {
        for n in [0, 16, 31, 33] {
            #expect(throws: CryptoError.invalidKeyLength(n)) { try ChaCha20Poly1305(key: [UInt8](repeating: 0, count: n)) }
        }
        let aead = try ChaCha20Poly1305(key: Self.aeadKey)
        for n in [0, 8, 11, 13, 24] {
            #expect(throws: CryptoError.invalidNonceLength(n)) { try aead.seal([1], nonce: [UInt8](repeating: 0, count: n)) }
            #expect(throws: CryptoError.invalidNonceLength(n)) { try aead.open([UInt8](repeating: 0, count: 17), nonce: [UInt8](repeating: 0, count: n)) }
        }
        let nonce = [UInt8](repeating: 0, count: 12)
        let sealed = try aead.seal([], nonce: nonce)
        #expect(sealed.count == 16)
        #expect(try aead.open(sealed, nonce: nonce) == [])
    }

    @Test("a reused keyed context matches fresh contexts across many nonces and sizes")
    func aeadContextReuse() throws {
        let reused = try ChaCha20Poly1305(key: Self.aeadKey)
        var rng = SplitMix64(seed: 1)
        for i in 0..<200 {
            var nonce = [UInt8](repeating: 0, count: 12)
            nonce[4] = UInt8(i & 0xff); nonce[5] = UInt8(i >> 8)
            let pt = (0..<(i * 13 % 700)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let ad = (0..<(i % 5)).map { UInt8($0) }
            let a = try reused.seal(pt, nonce: nonce, associatedData: ad)
            let b = try ChaCha20Poly1305(key: Self.aeadKey).seal(pt, nonce: nonce, associatedData: ad)
            #expect(a == b)
            #expect(try reused.open(a, nonce: nonce, associatedData: ad) == pt)
        }
    }

    // MARK: HMAC-SHA256 (RFC 4231) and HKDF (RFC 5869, Noise)

    @Test("RFC 4231 HMAC-SHA256 test cases 1 and 2")
    func hmacVectors() {
        #expect(Hex.encode(HMACSHA256.authenticationCode(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(Hex.encode(HMACSHA256.authenticationCode(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test("RFC 5869 HKDF test cases 1 and 3 (extract and expand)")
    func hkdfVectors() {
        let ikm = [UInt8](repeating: 0x0b, count: 22)
        let prk = HKDF.extract(salt: hex("000102030405060708090a0b0c"), inputKeyMaterial: ikm)
        #expect(Hex.encode(prk) == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        let okm = HKDF.expand(pseudoRandomKey: prk, info: hex("f0f1f2f3f4f5f6f7f8f9"), length: 42)
        #expect(Hex.encode(okm) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        let prk3 = HKDF.extract(salt: [], inputKeyMaterial: ikm)
        #expect(Hex.encode(prk3) == "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04")
        #expect(Hex.encode(HKDF.expand(pseudoRandomKey: prk3, info: [], length: 42))
                == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
    }

    @Test("Noise HKDF follows its definition and equals RFC 5869 with salt = ck, empty info")
    func noiseHKDF() {
        let ck = (0..<32).map { UInt8($0) }
        let ikm = (0..<32).map { UInt8(0xa0 &+ $0) }
        let three = HKDF.noise(chainingKey: ck, inputKeyMaterial: ikm, numOutputs: 3)
        // By the definition in Noise rev. 34 §4.3, written out step by step.
        let temp = HMACSHA256.authenticationCode(key: ck, message: ikm)
        let o1 = HMACSHA256.authenticationCode(key: temp, message: [0x01])
        let o2 = HMACSHA256.authenticationCode(key: temp, message: o1 + [0x02])
        let o3 = HMACSHA256.authenticationCode(key: temp, message: o2 + [0x03])
        #expect(three == [o1, o2, o3])
        #expect(HKDF.noise(chainingKey: ck, inputKeyMaterial: ikm, numOutputs: 2) == [o1, o2])
        // The same bytes from RFC 5869 (independent code path: extract, then expand).
        let rfc = HKDF.expand(pseudoRandomKey: HKDF.extract(salt: ck, inputKeyMaterial: ikm), info: [], length: 96)
        #expect(three.flatMap { $0 } == rfc)
        // Zero-length input key material (Noise's Split uses it).
        let split = HKDF.noise(chainingKey: ck, inputKeyMaterial: [], numOutputs: 2)
        #expect(split.flatMap { $0 } == HKDF.expand(pseudoRandomKey: HMACSHA256.authenticationCode(key: ck, message: []), info: [], length: 64))
        #expect(split[0] != split[1])
    }
}

/// Deterministic generator for tests (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
