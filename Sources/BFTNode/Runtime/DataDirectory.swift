import Foundation
import BFTApplications
import BFTConfig
import BFTFrameCodec
import BFTStorage
import BFTTransport

/// The replica's data directory (write-ahead log, `status.json`, deliver log, `app.log`).
public enum DataDirectory {
    /// Mode of directories `create` makes: the files inside hold protocol state and client
    /// requests, which other local users have no reason to list or read.
    public static let mode: Int = 0o700

    /// `mkdir -p path`, creating every missing component with mode 0700. An existing directory
    /// is used as it is (its mode is the operator's choice, e.g. a shared volume); throws if
    /// `path` exists and is not a directory or cannot be created.
    public static func create(_ path: String) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
    }
}
