/// The view and the view-change protocol (§4.4, §4.5.2). It exists for liveness: a backup that
/// suspects the primary moves to the next view, and the NEW-VIEW carries into that view every
/// request that may have committed in an earlier one.
struct ViewChangeState {
    /// Current view, or the view being moved to while a view change is in progress.
    var view: ViewNum = 0
    /// Where the replica is in the view-change protocol for `view`.
    var phase: ViewPhase = .normal
    /// View changes started since the last progress: the view-change timeout doubles with each.
    var attempts = 0
    /// VIEW-CHANGE messages held (this replica's own included), the latest per sender.
    var received: [ReplicaID: ViewChange] = [:]
    /// The NEW-VIEW this replica installed last.
    var lastNewView: NewView?
    /// When the view-change timer fires (the view's primary is suspected, or the NEW-VIEW is late).
    var deadline: UInt64?
    /// Backups: when the primary must have sent a new pre-prepare (see `checkPrePrepareDeadline`).
    var prePrepareDeadline: UInt64?
    /// Per peer: the tick before which we do not resend it our NEW-VIEW again.
    var newViewResent: [ReplicaID: UInt64] = [:]

    /// False between sending VIEW-CHANGE for `view` and installing its NEW-VIEW.
    var active: Bool { phase == .normal }

    /// Our own VIEW-CHANGE is for the view we are moving to.
    func invariantViolations(replica id: ReplicaID) -> [String] {
        var v: [String] = []
        if !active, let mine = received[id], mine.newView > view { v.append("own VIEW-CHANGE for \(mine.newView) above view \(view)") }
        return v
    }
}
