/// `bft-loadgen`: see LoadGen.swift for the command line; the rest of this folder is split by
/// concern (Report, Measurements, Driver, FaultPlan, Flooder, SpawnedCluster).
LoadGen.main()
