import BFTCrypto
import BFTSession
import Testing

/// One test vector for Noise_XX_25519_ChaChaPoly_SHA256, copied verbatim from
/// the cacophony test vectors (the Haskell Noise implementation):
/// repository haskell-cryptography/cacophony, file vectors/cacophony.txt
/// (commit 8ee9d41e34a1a596cfa3ab12aa4069ff87dc1247), entry
/// "protocol_name": "Noise_XX_25519_ChaChaPoly_SHA256". The same file is
/// shipped by snow (mcginty/snow, tests/vectors/cacophony.txt).
///
/// Convention of the vector format: messages alternate initiator, responder,
/// initiator, … including the transport messages after the handshake.
enum CacophonyXX {
    static let protocolName = "Noise_XX_25519_ChaChaPoly_SHA256"
    static let initPrologue = "4a6f686e2047616c74"
    static let initStatic = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"
    static let initEphemeral = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
    static let respPrologue = "4a6f686e2047616c74"
    static let respStatic = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"
    static let respEphemeral = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
    static let handshakeHash = "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e"
    static let messages: [(payload: String, ciphertext: String)] = [
        ("4c756477696720766f6e204d69736573",
         "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573"),
        ("4d757272617920526f746862617264",
         "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad"),
        ("462e20412e20486179656b",
         "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030"),
        ("4361726c204d656e676572",
         "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        ("4a65616e2d426170746973746520536179",
         "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"),
        ("457567656e2042f6686d20766f6e2042617765726b",
         "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f"),
    ]
}

func h(_ s: String) -> [UInt8] { Hex.decode(s)! }

@Suite("Noise XX state machine")
struct NoiseTests {
    private static func pair(prologueI: String = CacophonyXX.initPrologue, prologueR: String = CacophonyXX.respPrologue)
        throws -> (HandshakeState, HandshakeState)
    {
        let i = HandshakeState(pattern: .xx, initiator: true, prologue: h(prologueI),
                               localStatic: try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.initStatic)),
                               localEphemeral: try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.initEphemeral)))
        let r = HandshakeState(pattern: .xx, initiator: false, prologue: h(prologueR),
                               localStatic: try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.respStatic)),
                               localEphemeral: try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.respEphemeral)))
        return (i, r)
    }

    @Test("cacophony vector: every handshake and transport ciphertext and the handshake hash")
    func cacophonyVector() throws {
        #expect(HandshakePattern.xx.protocolName() == CacophonyXX.protocolName)
        var (initiator, responder) = try Self.pair()
        var initiatorSend = CipherState(), initiatorReceive = CipherState()
        var responderSend = CipherState(), responderReceive = CipherState()
        for (index, message) in CacophonyXX.messages.enumerated() {
            let initiatorSends = index % 2 == 0
            let payload = h(message.payload)
            let ciphertext: [UInt8]
            let received: [UInt8]
            if index < HandshakePattern.xx.messages.count {
                if initiatorSends {
                    ciphertext = try initiator.writeMessage(payload: payload)
                    received = try responder.readMessage(ciphertext)
                } else {
                    ciphertext = try responder.writeMessage(payload: payload)
                    received = try initiator.readMessage(ciphertext)
                }
                if index == HandshakePattern.xx.messages.count - 1 {
                    #expect(initiator.isComplete && responder.isComplete)
                    #expect(Hex.encode(initiator.handshakeHash) == CacophonyXX.handshakeHash)
                    #expect(Hex.encode(responder.handshakeHash) == CacophonyXX.handshakeHash)
                    (initiatorSend, initiatorReceive) = try initiator.split()
                    (responderReceive, responderSend) = try responder.split()
                }
            } else if initiatorSends {
                ciphertext = try initiatorSend.encryptWithAd([], payload)
                received = try responderReceive.decryptWithAd([], ciphertext)
            } else {
                ciphertext = try responderSend.encryptWithAd([], payload)
                received = try initiatorReceive.decryptWithAd([], ciphertext)
            }
            #expect(Hex.encode(ciphertext) == message.ciphertext, "message \(index)")
            #expect(received == payload, "message \(index)")
        }
        // The responder learnt the initiator's static key and vice versa.
        #expect(responder.remoteStatic == (try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.initStatic))).publicKey)
        #expect(initiator.remoteStatic == (try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.respStatic))).publicKey)
    }

    @Test("messages 1 and 2 recomputed by hand from the spec formulas match the state machine")
    func messagesByHand() throws {
        var (initiator, _) = try Self.pair()
        let m1 = try initiator.writeMessage(payload: h(CacophonyXX.messages[0].payload))
        let ie = try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.initEphemeral))
        let re = try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.respEphemeral))
        let rs = try X25519.PrivateKey(rawRepresentation: h(CacophonyXX.respStatic))
        // InitializeSymmetric: the 32-byte name is h itself; ck = h. MixHash(prologue).
        var hh = Array(CacophonyXX.protocolName.utf8)
        #expect(hh.count == 32)
        var ck = hh
        func mixHash(_ d: [UInt8]) { hh = SHA256.hash(hh + d).bytes }
        mixHash(h(CacophonyXX.initPrologue))
        // -> e: MixHash(e.pub); payload in clear (no key yet); MixHash(payload).
        mixHash(ie.publicKey.rawRepresentation)
        let p1 = h(CacophonyXX.messages[0].payload)
        mixHash(p1)
        #expect(m1 == ie.publicKey.rawRepresentation + p1)
        // <- e, ee, s, es, payload (responder side).
        mixHash(re.publicKey.rawRepresentation)
        var out = HKDF.noise(chainingKey: ck, inputKeyMaterial: try re.sharedSecret(with: ie.publicKey), numOutputs: 2)
        ck = out[0]
        let encS = try ChaCha20Poly1305(key: out[1]).seal(rs.publicKey.rawRepresentation, nonce: [UInt8](repeating: 0, count: 12), associatedData: hh)
        mixHash(encS)
        out = HKDF.noise(chainingKey: ck, inputKeyMaterial: try rs.sharedSecret(with: ie.publicKey), numOutputs: 2)
        ck = out[0]
        let p2 = h(CacophonyXX.messages[1].payload)
        let encP = try ChaCha20Poly1305(key: out[1]).seal(p2, nonce: [UInt8](repeating: 0, count: 12), associatedData: hh)
        let m2 = re.publicKey.rawRepresentation + encS + encP
        #expect(Hex.encode(m2) == CacophonyXX.messages[1].ciphertext)
        #expect(try initiator.readMessage(m2) == p2)
    }

    @Test("flipping any bit of any handshake message makes the handshake fail")
    func tamperEveryByte() throws {
        let (i0, r0) = try Self.pair()
        // Honest transcript first, to know the message sizes.
        var a = i0, b = r0
        let m1 = try a.writeMessage(payload: [1, 2, 3]); _ = try b.readMessage(m1)
        let m2 = try b.writeMessage(payload: [4, 5]); _ = try a.readMessage(m2)
        let m3 = try a.writeMessage(payload: [6]); _ = try b.readMessage(m3)
        for (which, message) in [m1, m2, m3].enumerated() {
            for byte in 0..<message.count {
                var x = i0, y = r0
                let failed: Bool
                do {
                    var n1 = try x.writeMessage(payload: [1, 2, 3])
                    if which == 0 { n1[byte] ^= 0x01 << (byte % 8) }
                    _ = try y.readMessage(n1)
                    var n2 = try y.writeMessage(payload: [4, 5])
                    if which == 1 { n2[byte] ^= 0x01 << (byte % 8) }
                    _ = try x.readMessage(n2)
                    var n3 = try x.writeMessage(payload: [6])
                    if which == 2 { n3[byte] ^= 0x01 << (byte % 8) }
                    _ = try y.readMessage(n3)
                    // Message 1 is unencrypted: a flip in its payload is caught by the hashes diverging.
                    failed = x.handshakeHash != y.handshakeHash
                } catch {
                    failed = true
                }
                #expect(failed, "message \(which + 1) byte \(byte)")
            }
        }
    }

    @Test("different prologues: the first encrypted field fails to decrypt")
    func prologueMismatch() throws {
        var (i, r) = try Self.pair(prologueR: "4a6f686e2047616c75")
        _ = try r.readMessage(try i.writeMessage(payload: []))
        let m2 = try r.writeMessage(payload: [])
        #expect(throws: SessionError.handshakeDecryptFailed) { try i.readMessage(m2) }
    }

    @Test("nonce encoding is 4 zero bytes + little-endian counter; 2^64-1 is refused; failures do not advance")
    func nonces() throws {
        #expect(CipherState.encodeNonce(0x0102_0304_0506_0708) == [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        let key = [UInt8](repeating: 7, count: 32)
        var sender = try CipherState(key: key), receiver = try CipherState(key: key)
        sender.setNonce(UInt64.max - 1); receiver.setNonce(UInt64.max - 1)
        let c = try sender.encryptWithAd([9], [1, 2, 3])
        // Same result as a raw AEAD at the encoded nonce.
        #expect(c == (try ChaCha20Poly1305(key: key).seal([1, 2, 3], nonce: CipherState.encodeNonce(UInt64.max - 1), associatedData: [9])))
        var bad = c; bad[0] ^= 1
        #expect(throws: SessionError.handshakeDecryptFailed) { try receiver.decryptWithAd([9], bad) }
        #expect(receiver.nonce == UInt64.max - 1)
        #expect(try receiver.decryptWithAd([9], c) == [1, 2, 3])
        #expect(sender.nonce == UInt64.max && receiver.nonce == UInt64.max)
        #expect(throws: SessionError.nonceExhausted) { try sender.encryptWithAd([], [1]) }
        #expect(throws: SessionError.nonceExhausted) { try receiver.decryptWithAd([], c) }
        // An empty key is the identity function (Noise §5.1).
        var empty = CipherState()
        #expect(try empty.encryptWithAd([1], [5, 6]) == [5, 6])
    }

    @Test("steps out of turn are refused")
    func outOfTurn() throws {
        var (i, r) = try Self.pair()
        #expect(throws: SessionError.handshakeOutOfOrder) { try r.writeMessage(payload: []) }
        #expect(throws: SessionError.handshakeOutOfOrder) { try i.readMessage([UInt8](repeating: 0, count: 32)) }
        #expect(throws: SessionError.handshakeOutOfOrder) { try i.split() }
    }
}
