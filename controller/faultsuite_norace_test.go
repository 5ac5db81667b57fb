//go:build !race

package controller

// fsRace: the fault suite runs fewer seeds under the race detector.
const fsRace = false
